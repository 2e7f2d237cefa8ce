"""Decode candidates in background threads and embed them in batched model calls.

Decoding (file reads, Pillow, libsndfile, resampling) releases the GIL, so a small thread
pool keeps the next batch ready while the model runs on the current one. Results come back
in input order with a bounded number in flight, so memory stays flat on any collection size.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from crossmodal.aligner.model import Aligner
from crossmodal.catalog import NewItem, NewSegment
from crossmodal.errors import CrossmodalError, DecodeError
from crossmodal.ingest.chunk_text import TextChunk, chunk_text
from crossmodal.ingest.decode import DecodeLimits, decode_audio, decode_image, read_text
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


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_hash(cand: Candidate) -> str:
    """Identity of an item's content: the hashes of its parts, so identical files dedupe."""
    parts = [f"{m}:{file_sha256(p)}" for m, p in sorted(cand.media.items())]
    if cand.text_path is not None:
        parts.append(f"text:{file_sha256(cand.text_path)}")
    if cand.text is not None:
        parts.append("text:" + hashlib.sha256(cand.text.encode("utf-8")).hexdigest())
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def decode_candidate(cand: Candidate, settings: IngestSettings) -> Decoded:
    """Read and decode every part of a candidate; raises DecodeError naming the bad file."""
    limits = DecodeLimits(settings.max_image_pixels, settings.max_audio_seconds, settings.max_text_bytes)
    out = Decoded(cand, content_hash(cand), meta=dict(cand.meta))
    if "image" in cand.media:
        out.image = decode_image(cand.media["image"], limits)
        out.meta.update(width=out.image.width, height=out.image.height)
    if "audio" in cand.media:
        out.wave = decode_audio(cand.media["audio"], limits)
        out.meta.update(duration=round(out.wave.duration, 3), sample_rate=out.wave.sample_rate)
    text = cand.text
    if cand.text_path is not None:
        text = read_text(cand.text_path, limits)
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
    """The decoding thread count a run uses (resolving -1, auto)."""
    if settings.workers >= 0:
        return settings.workers
    return 0 if (os.cpu_count() or 1) <= 2 else 2


def decode_stream(cands: Iterable[Candidate], settings: IngestSettings) -> Iterator[Decoded | Skip]:
    """Decoded candidates (or a Skip naming the file and reason), in input order.

    ``workers = 0`` decodes in the calling thread. On a 2-core machine with a model as small as
    the starter that is faster: background threads compete with torch's threads for the same
    cores and the GIL (scripts/bench_ingest.py measures both)."""
    workers = decode_workers(settings)
    if workers == 0:
        for cand in cands:
            yield decode_or_skip(cand, settings)
        return
    ahead = workers * settings.batch_size * 2
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: list[Future] = []
        it = iter(cands)
        for cand in it:
            pending.append(pool.submit(decode_or_skip, cand, settings))
            if len(pending) >= ahead:
                break
        while pending:
            result = pending.pop(0).result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(decode_or_skip, nxt, settings))
            yield result


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
