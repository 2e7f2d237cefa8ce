"""Content fingerprints of images and sounds, for telling a copy of a file from another item.

A model's vectors say what an item shows, not which file it is: the starter model puts two
different handwritten 7s, or two recordings of one speaker saying "seven", at cosines up to
0.9999, as close as a JPEG re-encode of one of them. A fingerprint is a small signature of
the content itself (a 12x12 grey thumbnail; a 32-step x 12-band log-energy map of the sound),
mean-removed and L2-normalised, so it does not move under re-encoding, resizing, brightness,
volume or a little noise, but does between two drawings or two takes. `crossmodal.search.duplicates`
compares them; the measurements are in docs/search.md#near-duplicates.

Each is stored in the item's metadata as ``{"v": 1, "image": ..., "audio": ...}`` (int8,
base64), a few hundred bytes an item.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from PIL import Image

from crossmodal.media import Waveform

VERSION = 1
"""Fingerprints of another version are not compared (the method changed)."""
IMAGE_GRID = 12
AUDIO_RATE = 8000
AUDIO_STEPS = 32
AUDIO_BANDS = 12
AUDIO_FRAME = 256
AUDIO_HOP = 32
"""Frames every 4 ms: a copy whose sound starts a few milliseconds later (another lead-in
silence, an encoder's delay) lands on nearly the same frames."""
TRIM_DB = 35.0
"""Leading and trailing sound quieter than this below the peak is cut before the audio print,
so padding with silence does not move it."""
FLOOR_DB = 30.0
"""Band energies are floored this far below the loudest, so faint noise and codec artefacts
in near-silent cells do not count."""
FRAMES_PER_BLOCK = 4096
"""Frames transformed at once within a step, so a long recording costs bounded memory."""
_HIGH_DEPTH = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _unit(v: np.ndarray) -> np.ndarray | None:
    v = np.asarray(v, dtype=np.float32).ravel()
    v = v - v.mean()
    norm = float(np.linalg.norm(v))
    return None if not np.isfinite(norm) or norm < 1e-6 else v / norm


def image_fingerprint(image: Image.Image) -> np.ndarray | None:
    """A 144-value signature of a picture's grey levels (None for a flat picture)."""
    if image.mode in _HIGH_DEPTH:
        grey = image.convert("I").convert("F") if image.mode != "F" else image
    else:
        grey = image.convert("L").convert("F")
    small = grey.resize((IMAGE_GRID, IMAGE_GRID), Image.Resampling.BOX)
    return _unit(np.asarray(small, dtype=np.float32))


def _band_edges() -> np.ndarray:
    """AUDIO_BANDS log-spaced bands of FFT bins from 62 Hz up, each at least one bin wide."""
    edges = np.round(np.geomspace(2, AUDIO_FRAME // 2 + 1, AUDIO_BANDS + 1)).astype(int)
    for i in range(1, edges.size):
        edges[i] = max(edges[i], edges[i - 1] + 1)
    return edges


def _trimmed(samples: np.ndarray) -> np.ndarray:
    """``samples`` without leading and trailing sound TRIM_DB below the loudest 4 ms."""
    hop = AUDIO_HOP
    if samples.size < hop:
        return samples
    blocks = samples[:samples.size // hop * hop].reshape(-1, hop)  # a view: no copy of a long recording
    level = 10 * np.log10(np.einsum("ij,ij->i", blocks, blocks) + 1e-12)
    loud = np.flatnonzero(level > level.max() - TRIM_DB)
    return samples[loud[0] * hop:(loud[-1] + 1) * hop] if loud.size else samples


def audio_fingerprint(wave: Waveform) -> np.ndarray | None:
    """A 32 x 12 signature of a sound's log band energies over its (trimmed) length; None for
    silence or samples that are not finite."""
    samples = np.asarray(wave.samples, dtype=np.float32)
    samples = samples.mean(axis=1) if samples.ndim == 2 else samples
    if samples.size == 0 or not np.isfinite(samples).all() or wave.sample_rate <= 0:
        return None
    if wave.sample_rate != AUDIO_RATE:
        import soxr

        samples = soxr.resample(samples, wave.sample_rate, AUDIO_RATE).astype(np.float32)
    sound = _trimmed(samples)
    if sound.size < AUDIO_FRAME:
        sound = np.pad(sound, (0, AUDIO_FRAME - sound.size))
    edges, window, hop = _band_edges(), np.hanning(AUDIO_FRAME).astype(np.float32), AUDIO_HOP
    rows = []
    bounds = np.linspace(0, sound.size, AUDIO_STEPS + 1).astype(int)
    for start, stop in zip(bounds[:-1], bounds[1:]):
        if stop - start < AUDIO_FRAME:  # a short sound: one frame centred on the step
            start = min(max(0, (start + stop) // 2 - AUDIO_FRAME // 2), sound.size - AUDIO_FRAME)
            stop = start + AUDIO_FRAME
        frames = 1 + (stop - start - AUDIO_FRAME) // hop
        power = np.zeros(AUDIO_FRAME // 2 + 1)
        for first in range(0, frames, FRAMES_PER_BLOCK):  # bounded memory however long the step is
            block = np.arange(first, min(frames, first + FRAMES_PER_BLOCK))
            idx = start + hop * block[:, None] + np.arange(AUDIO_FRAME)
            power += (np.abs(np.fft.rfft(sound[idx] * window, axis=1)) ** 2).sum(axis=0)
        rows.append(np.add.reduceat(power / frames, edges[:-1]))
    level = 10 * np.log10(np.asarray(rows) + 1e-10)
    return _unit(np.maximum(level, level.max() - FLOOR_DB))


def encode(v: np.ndarray) -> str:
    """int8 base64: cosines survive to about 1e-4."""
    peak = float(np.abs(v).max()) or 1.0
    return base64.b64encode(np.round(v / peak * 127).astype(np.int8).tobytes()).decode("ascii")


def decode(text: Any) -> np.ndarray | None:
    """The unit vector ``encode`` stored, or None for anything else."""
    if not isinstance(text, str):
        return None
    try:
        raw = np.frombuffer(base64.b64decode(text, validate=True), dtype=np.int8).astype(np.float32)
    except ValueError:
        return None
    norm = float(np.linalg.norm(raw))
    return raw / norm if norm > 0 else None


def _safely(make: Any, media: Any) -> np.ndarray | None:
    """A fingerprint, or None: a file the model can read is never skipped for its print."""
    if media is None:
        return None
    try:
        return make(media)
    except (ValueError, OSError, MemoryError):
        return None


def fingerprints(image: Image.Image | None, wave: Waveform | None) -> dict[str, Any]:
    """The metadata entry for an item's media (empty when there is nothing to print)."""
    out: dict[str, Any] = {}
    image_print = _safely(image_fingerprint, image)
    audio_print = _safely(audio_fingerprint, wave)
    for modality, value in (("image", image_print), ("audio", audio_print)):
        if value is not None:
            out[modality] = encode(value)
    return {"v": VERSION, **out} if out else {}


def stored_prints(meta: Any) -> dict[str, np.ndarray]:
    """The fingerprints an item's metadata holds, by modality (none from another version)."""
    entry = meta.get("fingerprint") if isinstance(meta, dict) else None
    if not isinstance(entry, dict) or entry.get("v") != VERSION:
        return {}
    prints = {m: decode(entry.get(m)) for m in ("image", "audio")}
    return {m: v for m, v in prints.items() if v is not None}
