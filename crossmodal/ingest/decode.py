"""Decoding image, audio and text files with bounded work and errors that name the file.

Every decoder raises `DecodeError(path, reason)` for a file it cannot use, so callers can skip
one bad file and keep going. Pillow's decompression-bomb guard stays on, and audio length is
checked from the header before any samples are read.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from crossmodal.errors import DecodeError
from crossmodal.media import Waveform


@dataclass(frozen=True)
class DecodeLimits:
    """Upper bounds on what one file may cost to decode."""

    max_image_pixels: int = 64_000_000
    max_audio_seconds: float = 3 * 3600.0
    max_text_bytes: int = 20_000_000


DEFAULT_LIMITS = DecodeLimits()


def _check_file(path: Path) -> int:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DecodeError(path, "file does not exist") from None
    except OSError as exc:
        raise DecodeError(path, f"cannot read file ({exc.strerror or exc})") from None
    if not path.is_file():
        raise DecodeError(path, "not a regular file")
    if size == 0:
        raise DecodeError(path, "file is empty")
    return size


def decode_image(path: str | Path, limits: DecodeLimits = DEFAULT_LIMITS) -> Image.Image:
    """A fully loaded Pillow image, EXIF orientation applied, first frame of animations."""
    path = Path(path)
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > limits.max_image_pixels:
                    raise DecodeError(path, f"image is {img.width}x{img.height}, over the "
                                            f"{limits.max_image_pixels:,}-pixel limit")
                img.seek(0)
                img.load()
                oriented = ImageOps.exif_transpose(img)
                return oriented if oriented is not img else img.copy()
    except DecodeError:
        raise
    except UnidentifiedImageError:
        raise DecodeError(path, "not a recognised image format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(path, f"image too large to decode safely ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DecodeError(path, f"corrupt or truncated image ({exc})") from None


def decode_audio(path: str | Path, limits: DecodeLimits = DEFAULT_LIMITS) -> Waveform:
    """Float32 samples (frames, channels) and rate, read with soundfile (WAV, FLAC, OGG, MP3)."""
    import soundfile as sf

    path = Path(path)
    _check_file(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise DecodeError(path, f"not a recognised audio format ({exc})") from None
    if info.samplerate <= 0 or info.channels <= 0:
        raise DecodeError(path, "audio header has no sample rate or channels")
    if info.frames and info.frames / info.samplerate > limits.max_audio_seconds:
        raise DecodeError(path, f"audio lasts {info.frames / info.samplerate:.0f} s, over the "
                                f"{limits.max_audio_seconds:g}-second limit")
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True,
                                frames=int(limits.max_audio_seconds * info.samplerate) + 1)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise DecodeError(path, f"corrupt audio data ({exc})") from None
    if samples.shape[0] == 0:
        raise DecodeError(path, "audio holds no samples")
    if samples.shape[0] > limits.max_audio_seconds * rate:
        raise DecodeError(path, f"audio is longer than the {limits.max_audio_seconds:g}-second limit")
    if not np.isfinite(samples).all():
        raise DecodeError(path, "audio contains NaN or infinite samples")
    return Waveform(samples[:, 0] if samples.shape[1] == 1 else samples, int(rate))


def read_text(path: str | Path, limits: DecodeLimits = DEFAULT_LIMITS) -> str:
    """UTF-8 text (BOM allowed); binary or oversized files are refused."""
    path = Path(path)
    size = _check_file(path)
    if size > limits.max_text_bytes:
        raise DecodeError(path, f"text file is {size:,} bytes, over the {limits.max_text_bytes:,}-byte limit")
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise DecodeError(path, "binary data, not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DecodeError(path, f"not UTF-8 text (bad byte at offset {exc.start})") from None
    if not text.strip():
        raise DecodeError(path, "text file holds only whitespace")
    return text
