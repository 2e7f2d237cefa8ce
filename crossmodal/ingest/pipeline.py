"""Decode candidates in worker processes and embed them in batched model calls.

Worker processes keep the next batches decoded while the model runs on the current one.
Results come back in input order with a bounded number in flight, so memory stays flat on any
collection size.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from crossmodal.aligner.model import Aligner
from crossmodal.catalog import NewItem, NewSegment
from crossmodal.errors import CrossmodalError, DecodeError
from crossmodal.ingest.chunk_text import TextChunk, chunk_text
from crossmodal.ingest.decode import DecodeLimits, decode_audio, decode_image, read_small_file, read_text
from crossmodal.ingest.sources import Candidate, Skip
from crossmodal.media import Waveform
from crossmodal.settings import IngestSettings


@dataclass
class Decoded:
    """A candidate's media in memory, ready for the model."""

    cand: Candidate
    content_hash: str
    image: Image.Image | None = None
    wave: Waveform | None = None
    chunks: list[TextChunk] = field(default_factory=list)
    meta: dict = field(default_factory=dict)


IN_MEMORY_BYTES = 32 << 20


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_part(path) -> tuple[bytes | None, str]:
    """A part's bytes (None when too big to hold: it is then decoded from its path) and hash.
    Small files are read once, for both the hash and the decoder."""
    data = read_small_file(path, IN_MEMORY_BYTES)
    return data, (hashlib.sha256(data).hexdigest() if data is not None else file_sha256(path))


def decode_candidate(cand: Candidate, settings: IngestSettings) -> Decoded:
    """Read and decode every part of a candidate; raises DecodeError naming the bad file.

    The content hash, the item's identity so identical files dedupe, combines the hashes of
    its parts."""
    limits = DecodeLimits(settings.max_image_pixels, settings.max_audio_seconds, settings.max_text_bytes)
    out = Decoded(cand, "", meta=dict(cand.meta))
    hashes = []
    if "image" in cand.media:
        data, digest = _read_part(cand.media["image"])
        hashes.append(f"image:{digest}")
        out.image = decode_image(cand.media["image"], limits, data)
        out.meta.update(width=out.image.width, height=out.image.height)
    if "audio" in cand.media:
        # From the path: libsndfile reading a file beats it reading memory through Python callbacks.
        out.wave = decode_audio(cand.media["audio"], limits)
        hashes.append(f"audio:{file_sha256(cand.media['audio'])}")
        out.meta.update(duration=round(out.wave.duration, 3), sample_rate=out.wave.sample_rate)
    text = cand.text
    if cand.text_path is not None:
        data, digest = _read_part(cand.text_path)
        hashes.append(f"text:{digest}")
        text = read_text(cand.text_path, limits, data)
    elif text is not None:
        hashes.append("text:" + hashlib.sha256(text.encode("utf-8")).hexdigest())
    media_hashes = sorted(h for h in hashes if not h.startswith("text:"))
    text_hashes = [h for h in hashes if h.startswith("text:")]
    out.content_hash = hashlib.sha256("|".join(media_hashes + text_hashes).encode()).hexdigest()
    if text is not None:
        out.chunks = chunk_text(text, settings.text_max_chars, settings.text_min_chars)
        if not out.chunks:
            raise DecodeError(cand.text_path or cand.uri, "text holds nothing to index")
        if cand.modality != "text":
            out.meta["caption"] = text.strip()[:2000]
    return out


def decode_or_skip(cand: Candidate, settings: IngestSettings) -> Decoded | Skip:
    """`decode_candidate`, with any failure turned into a Skip naming the file."""
    try:
        return decode_candidate(cand, settings)
    except DecodeError as exc:
        return Skip(exc.path, exc.reason)
    except (OSError, ValueError, MemoryError) as exc:
        return Skip(cand.uri, f"cannot read ({type(exc).__name__}: {exc})")


def decode_workers(settings: IngestSettings) -> int:
    """The decoding process count a run uses (resolving -1, auto)."""
    if settings.workers >= 0:
        return settings.workers
    return 0 if (os.cpu_count() or 1) <= 2 else 2


def _decode_chunk(cands: list[Candidate], settings: IngestSettings) -> list[Decoded | Skip]:
    return [decode_or_skip(cand, settings) for cand in cands]


def _worker_init(parent_pid: int) -> None:
    """Tie a decode worker's life to the indexer's: a killed indexer must not leave workers
    behind holding its files (the collection's writer lock among them). Ctrl-C is the main
    process's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(0)


def _new_pool(workers: int, context: multiprocessing.context.BaseContext) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init,
                               initargs=(os.getpid(),))


def _worker_context() -> multiprocessing.context.BaseContext | None:
    """Fork where the platform has it: a forked worker starts in milliseconds, as torch's own
    DataLoader workers do; a spawned one would import torch again before decoding anything."""
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return None


def decode_stream(cands: Iterable[Candidate], settings: IngestSettings) -> Iterator[Decoded | Skip]:
    """Decoded candidates (or a Skip naming the file and reason), in input order.

    With ``workers`` > 0, worker processes decode chunks of candidates ahead of the model, so
    decoding (file reads, Pillow, libsndfile, hashing) runs beside the forward pass instead of
    before it, without competing for the main process's GIL. ``workers = 0`` decodes in the
    calling process; so does a platform without fork. At most two batches per worker are in
    flight, so memory stays flat on any collection size."""
    workers = decode_workers(settings)
    context = _worker_context()
    if workers == 0 or context is None:
        for cand in cands:
            yield decode_or_skip(cand, settings)
        return
    chunk = max(1, settings.batch_size // 8)
    parts = batched(cands, chunk)
    pool = _new_pool(workers, context)
    pending: deque[tuple[list[Candidate], Future]] = deque()
    try:
        while True:
            while len(pending) < 16 * workers and (part := next(parts, None)) is not None:
                pending.append((part, pool.submit(_decode_chunk, part, settings)))
            if not pending:
                return
            part, future = pending.popleft()
            try:
                results = future.result()
            except BrokenProcessPool:
                pool.shutdown(cancel_futures=True)
                results = _decode_isolated(part, settings, context)
                pool = _new_pool(workers, context)
                pending = deque((p, pool.submit(_decode_chunk, p, settings)) for p, _ in pending)
            yield from results
    finally:
        pool.shutdown(cancel_futures=True)


def _decode_isolated(cands: list[Candidate], settings: IngestSettings,
                     context: multiprocessing.context.BaseContext) -> list[Decoded | Skip]:
    """After a decoder crashed a worker (a native library on a hostile file), decode the chunk
    one file per process: the culprit is skipped, the others are kept."""
    out: list[Decoded | Skip] = []
    for cand in cands:
        with _new_pool(1, context) as solo:
            try:
                out.append(solo.submit(decode_or_skip, cand, settings).result())
            except BrokenProcessPool:
                out.append(Skip(cand.uri, "the decoder crashed on this file"))
    return out


def batched(stream: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for x in stream:
        batch.append(x)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _normalise(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return (v / norm).astype(np.float32) if norm > 0 else v.astype(np.float32)


def _fuse(parts: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    total = sum(weights.get(m, 1.0) * v for m, v in parts.items())
    return _normalise(np.asarray(total, dtype=np.float32))


def _embed_batch(aligner: Aligner, batch: Sequence[Decoded], weights: dict[str, float]) -> list[NewItem]:
    images = [d for d in batch if d.image is not None]
    image_vecs = aligner.embed_images([d.image for d in images]) if images else np.zeros((0, aligner.embed_dim))
    clips = [d for d in batch if d.wave is not None]
    audio = aligner.embed_audio([d.wave for d in clips], sources=[d.cand.uri for d in clips]) if clips else []
    texts = [c.text for d in batch for c in d.chunks]
    text_vecs = aligner.embed_texts(texts) if texts else np.zeros((0, aligner.embed_dim))
    image_of = {id(d): image_vecs[i] for i, d in enumerate(images)}
    audio_of = {id(d): audio[i] for i, d in enumerate(clips)}
    items, t = [], 0
    for d in batch:
        item = NewItem(d.content_hash, d.cand.modality, d.cand.modalities, meta=d.meta)
        parts: dict[str, np.ndarray] = {}
        if id(d) in image_of:
            item.vectors["image"] = parts["image"] = image_of[id(d)]
        if id(d) in audio_of:
            emb = audio_of[id(d)]
            item.segments += [NewSegment("audio", float(s), float(e), v)
                              for v, s, e in zip(emb.vectors, emb.starts, emb.ends)]
            parts["audio"] = emb.clip_vector
        if d.chunks:
            vecs = text_vecs[t:t + len(d.chunks)]
            t += len(d.chunks)
            item.segments += [NewSegment("text", c.start, c.end, v, text=c.text) for c, v in zip(d.chunks, vecs)]
            parts["text"] = _normalise(vecs.mean(axis=0))
        if len(parts) > 1:
            item.vectors["fused"] = _fuse(parts, weights)
        items.append(item)
    return items


def embed_decoded(aligner: Aligner, batch: Sequence[Decoded],
                  weights: dict[str, float]) -> list[tuple[Decoded, NewItem | Skip]]:
    """Embed a batch in one model call per modality; if the batch fails (one clip the model
    cannot take), embed item by item so only the bad one is skipped."""
    try:
        return list(zip(batch, _embed_batch(aligner, batch, weights)))
    except (CrossmodalError, ValueError, RuntimeError) as exc:
        if len(batch) == 1:
            return [(batch[0], Skip(batch[0].cand.uri, f"cannot embed ({exc})"))]
    out: list[tuple[Decoded, NewItem | Skip]] = []
    for d in batch:
        out += embed_decoded(aligner, [d], weights)
    return out
