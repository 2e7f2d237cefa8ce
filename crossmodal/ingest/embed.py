"""Candidates in, embedded items out: decoding, hashing and batched model calls.

On a CPU the work is spread over forked worker processes, one per core, each decoding and
embedding whole batches on one torch thread; the indexing process only writes the catalog. Two
single-threaded processes on two cores do more than one process with two intra-op threads,
which wait for each other at every layer, and decoding no longer stalls the model. Results
come back in input order.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from crossmodal.aligner.open_clip_source import file_sha256
from crossmodal.errors import CrossmodalError, DecodeError
from crossmodal.ingest.chunk_text import TextChunk, chunk_text
from crossmodal.ingest.decode import decode_audio, decode_image, ingest_limits, read_small_file, read_text
from crossmodal.ingest.discover import Candidate
from crossmodal.ingest.fingerprint import fingerprints
from crossmodal.ingest.workers import OrderedProcessMap, batched, fork_context
from crossmodal.items import NewItem, NewSegment, Skip
from crossmodal.media import Waveform
from crossmodal.settings import IngestSettings

if TYPE_CHECKING:  # torch loads with the model, not with this module
    from crossmodal.aligner.index_encoder import IndexEncoder


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


def _read_part(path) -> tuple[bytes | None, str]:
    """A part's bytes (None when too big to hold: it is then decoded from its path) and hash.
    Small files are read once, for both the hash and the decoder."""
    data = read_small_file(path, IN_MEMORY_BYTES)
    return data, (hashlib.sha256(data).hexdigest() if data is not None else file_sha256(path))


def decode_candidate(cand: Candidate, settings: IngestSettings) -> Decoded:
    """Read and decode every part of a candidate; raises DecodeError naming the bad file.

    The content hash, the item's identity so identical files dedupe, combines the hashes of
    its parts."""
    limits = ingest_limits(settings)
    out = Decoded(cand, "", meta=dict(cand.meta))
    media_hashes, text_hashes = [], []
    if "image" in cand.media:
        data, digest = _read_part(cand.media["image"])
        media_hashes.append(f"image:{digest}")
        out.image = decode_image(cand.media["image"], limits, data)
        out.meta.update(width=out.image.width, height=out.image.height)
    if "audio" in cand.media:
        data, digest = _read_part(cand.media["audio"])
        media_hashes.append(f"audio:{digest}")
        out.wave = decode_audio(cand.media["audio"], limits, data)
        out.meta.update(duration=round(out.wave.duration, 3), sample_rate=out.wave.sample_rate)
    text = cand.text
    if cand.text_path is not None:
        data, digest = _read_part(cand.text_path)
        text_hashes.append(f"text:{digest}")
        text = read_text(cand.text_path, limits, data)
    elif text is not None:
        text_hashes.append("text:" + hashlib.sha256(text.encode("utf-8")).hexdigest())
    out.content_hash = hashlib.sha256("|".join(sorted(media_hashes) + text_hashes).encode()).hexdigest()
    prints = fingerprints(out.image, out.wave)  # tells a copy from another item; see fingerprint.py
    if prints:
        out.meta["fingerprint"] = prints
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


def _normalise(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return (v / norm).astype(np.float32) if norm > 0 else v.astype(np.float32)


def _fuse(parts: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    total = sum(weights.get(m, 1.0) * v for m, v in parts.items())
    return _normalise(np.asarray(total, dtype=np.float32))


def _embed_batch(encoder: IndexEncoder, batch: Sequence[Decoded], weights: dict[str, float]) -> list[NewItem]:
    images = [d for d in batch if d.image is not None]
    image_vecs = encoder.embed_images([d.image for d in images]) if images else np.zeros((0, encoder.embed_dim))
    clips = [d for d in batch if d.wave is not None]
    audio = encoder.embed_audio([d.wave for d in clips], sources=[d.cand.uri for d in clips]) if clips else []
    texts = [c.text for d in batch for c in d.chunks]
    text_vecs = encoder.embed_texts(texts) if texts else np.zeros((0, encoder.embed_dim))
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


def embed_decoded(encoder: IndexEncoder, batch: Sequence[Decoded],
                  weights: dict[str, float]) -> list[tuple[Decoded, NewItem | Skip]]:
    """Embed a batch in one model call per modality; if the batch fails (one clip the model
    cannot take), embed item by item so only the bad one is skipped."""
    try:
        return list(zip(batch, _embed_batch(encoder, batch, weights)))
    except (CrossmodalError, ValueError, RuntimeError) as exc:
        if len(batch) == 1:
            return [(batch[0], Skip(batch[0].cand.uri, f"cannot embed ({exc})"))]
    out: list[tuple[Decoded, NewItem | Skip]] = []
    for d in batch:
        out += embed_decoded(encoder, [d], weights)
    return out


@dataclass
class Outcome:
    """One candidate after decoding and embedding: the item to store, a Skip saying why not,
    or None when its content is already in the catalog (only the file is linked)."""

    cand: Candidate
    content_hash: str | None
    item: NewItem | Skip | None


KnownHashes = Callable[[list[str]], set[str]]


def process_batch(cands: Sequence[Candidate], encoder: IndexEncoder, settings: IngestSettings,
                  weights: dict[str, float], known: KnownHashes) -> list[Outcome]:
    """Decode a batch, embed the parts whose content is new in one model call per modality.
    ``known(hashes)`` says which of a batch's content hashes the catalog holds already."""
    decoded = [decode_or_skip(cand, settings) for cand in cands]
    stored = known([d.content_hash for d in decoded if isinstance(d, Decoded)])
    fresh = [d for d in decoded if isinstance(d, Decoded) and d.content_hash not in stored]
    embedded = {id(d): r for d, r in embed_decoded(encoder, fresh, weights)} if fresh else {}
    return [Outcome(c, None, d) if isinstance(d, Skip) else Outcome(c, d.content_hash, embedded.get(id(d)))
            for c, d in zip(cands, decoded)]


def embed_workers(settings: IngestSettings, encoder: IndexEncoder) -> int:
    """Processes that decode and embed (0: everything in the calling process). Auto (-1) is
    one per core, up to 8; a model on a GPU stays in the calling process (CUDA does not fork)."""
    if fork_context() is None or encoder.device.type != "cpu":
        return 0
    if settings.workers >= 0:
        return settings.workers
    cores = os.cpu_count() or 1
    return 0 if cores < 2 else min(cores, 8)


_WORKER: dict = {}


def _setup_worker(encoder: IndexEncoder, settings: IngestSettings, weights: dict[str, float],
                  known: KnownHashes) -> None:
    """One torch thread per worker: OpenMP's thread pool does not survive fork (a forked child
    asking it for two threads hangs), and one process per core is the parallelism anyway."""
    import torch

    torch.set_num_threads(1)
    _WORKER.update(encoder=encoder, settings=settings, weights=weights, known=known)


def _worker_batch(cands: Sequence[Candidate]) -> list[tuple[str | None, NewItem | Skip | None]]:
    """Runs in a worker; the candidates stay behind (the indexer has them), only results travel."""
    outcomes = process_batch(cands, _WORKER["encoder"], _WORKER["settings"], _WORKER["weights"], _WORKER["known"])
    return [(o.content_hash, o.item) for o in outcomes]


def _crashed(cand: Candidate) -> tuple[None, Skip]:
    return None, Skip(cand.uri, "reading this file crashed the worker process")


def embed_stream(cands: Sequence[Candidate], encoder: IndexEncoder, settings: IngestSettings,
                 weights: dict[str, float], known: KnownHashes) -> Iterator[list[Outcome]]:
    """Outcomes batch by batch, in input order. ``known(hashes)`` says which contents are
    stored already, so they are not embedded again; with workers it is called in each worker,
    so it must be safe to call after a fork (it is inherited, never pickled)."""
    workers = embed_workers(settings, encoder)
    if workers == 0:
        for part in batched(cands, settings.batch_size):
            yield process_batch(part, encoder, settings, weights, known)
        return
    pool = OrderedProcessMap(_worker_batch, cands, workers, _crashed, setup=_setup_worker,
                             setup_args=(encoder, settings, weights, known))
    done = 0
    for results in pool.run(settings.batch_size):
        yield [Outcome(cand, *result) for cand, result in zip(cands[done:done + len(results)], results)]
        done += len(results)
