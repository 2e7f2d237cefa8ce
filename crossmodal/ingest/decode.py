"""Decoding image, audio and text files with bounded work and errors that name the file.

Every decoder raises `DecodeError(path, reason)` for a file it cannot use, so callers can skip
one bad file and keep going. Pillow's decompression-bomb guard stays on, and audio length is
checked from the header before any samples are read.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
import wave
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


def _unreadable(path: Path, exc: OSError) -> DecodeError:
    if isinstance(exc, FileNotFoundError):
        return DecodeError(path, "file does not exist")
    return DecodeError(path, f"cannot read file ({exc.strerror or exc})")


def _check_stat(path: Path, st: os.stat_result) -> int:
    """The size of a non-empty regular file; DecodeError for anything else."""
    if not stat.S_ISREG(st.st_mode):
        raise DecodeError(path, "not a regular file")
    if st.st_size == 0:
        raise DecodeError(path, "file is empty")
    return st.st_size


def _check_file(path: Path) -> int:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _unreadable(path, exc) from None
    return _check_stat(path, st)


def read_small_file(path: str | Path, limit: int) -> bytes | None:
    """The whole content of a regular file of at most ``limit`` bytes, else None (too big: the
    caller decodes from the path). Raises DecodeError for a missing, unreadable, empty or
    non-regular file. One open serves the checks and the read."""
    path = path if isinstance(path, Path) else Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the open
    except OSError as exc:
        raise _unreadable(path, exc) from None
    try:
        size = _check_stat(path, os.fstat(fd))
        return _read_all(fd, size, limit) if size <= limit else None
    except OSError as exc:
        raise _unreadable(path, exc) from None
    finally:
        os.close(fd)


def _read_all(fd: int, size: int, limit: int) -> bytes | None:
    """A file's bytes from its descriptor: one read when it is the size fstat gave; a file
    that grew since is read on to its end, or given up (None) once it passes ``limit``."""
    data = os.read(fd, size + 1)
    if len(data) <= size:
        return data
    chunks = [data]
    total = len(data)
    while chunk := os.read(fd, 1 << 20):
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _first_frame(img: Image.Image, path: Path, limits: DecodeLimits) -> Image.Image:
    if img.width * img.height > limits.max_image_pixels:
        raise DecodeError(path, f"image is {img.width}x{img.height}, over the "
                                f"{limits.max_image_pixels:,}-pixel limit")
    img.seek(0)
    img.load()
    return img


def decode_image(path: str | Path, limits: DecodeLimits = DEFAULT_LIMITS, data: bytes | None = None) -> Image.Image:
    """A fully loaded Pillow image, EXIF orientation applied, first frame of animations.

    ``data``, when given, is the file's content already read (errors still name ``path``)."""
    path = path if isinstance(path, Path) else Path(path)
    if data is None:
        _check_file(path)
    elif not data:
        raise DecodeError(path, "file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if data is not None:  # in memory: nothing to close, so a still image needs no copy
                img = _first_frame(Image.open(io.BytesIO(data)), path, limits)
                ImageOps.exif_transpose(img, in_place=True)
                return img.copy() if getattr(img, "is_animated", False) else img
            with Image.open(path) as img:
                return ImageOps.exif_transpose(_first_frame(img, path, limits))
    except DecodeError:
        raise
    except UnidentifiedImageError:
        raise DecodeError(path, "not a recognised image format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(path, f"image too large to decode safely ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DecodeError(path, f"corrupt or truncated image ({exc})") from None


def _sndfile_reason(exc: Exception) -> str:
    """libsndfile's own words, without soundfile's "Error opening <object>:" prefix."""
    return str(getattr(exc, "error_string", "") or exc)


def _check_duration(path: Path, frames: int, rate: int, limits: DecodeLimits) -> None:
    if frames and frames / rate > limits.max_audio_seconds:
        raise DecodeError(path, f"audio lasts {frames / rate:.0f} s, over the "
                                f"{limits.max_audio_seconds:g}-second limit")


_PCM_SCALE = {1: ("u1", 128.0, 128.0), 2: ("<i2", 0.0, 32768.0), 4: ("<i4", 0.0, 2147483648.0)}


def _pcm_wav(path: Path, data: bytes, limits: DecodeLimits) -> Waveform | None:
    """Integer-PCM WAV in memory, parsed by the standard library: for short clips several
    times faster than opening them with libsndfile, and the same samples. None for anything
    it does not fully understand (other encodings, odd headers, truncated data), which
    soundfile then reads or explains."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    try:
        with wave.open(io.BytesIO(data)) as handle:
            rate, channels, width = handle.getframerate(), handle.getnchannels(), handle.getsampwidth()
            frames = handle.getnframes()
            if rate <= 0 or channels <= 0 or width not in _PCM_SCALE or frames <= 0:
                return None
            _check_duration(path, frames, rate, limits)
            raw = handle.readframes(frames)
    except (wave.Error, EOFError, struct.error, ValueError):
        return None
    if len(raw) != frames * channels * width:
        return None
    dtype, offset, scale = _PCM_SCALE[width]
    samples = ((np.frombuffer(raw, dtype).astype(np.float32) - offset) / scale).reshape(frames, channels)
    return Waveform(samples[:, 0] if channels == 1 else samples, rate)


def decode_audio(path: str | Path, limits: DecodeLimits = DEFAULT_LIMITS, data: bytes | None = None) -> Waveform:
    """Float32 samples (frames, channels) and rate, read with soundfile (WAV, FLAC, OGG, MP3).

    The file is opened once: the header is checked against the length limit before any samples
    are read. ``data``, when given, is the file's content already read (errors name ``path``);
    plain PCM WAV in memory takes a faster parser."""
    import soundfile as sf

    path = path if isinstance(path, Path) else Path(path)
    if data is None:
        _check_file(path)
    elif not data:
        raise DecodeError(path, "file is empty")
    else:
        fast = _pcm_wav(path, data, limits)
        if fast is not None:
            return fast
    try:
        handle = sf.SoundFile(str(path) if data is None else io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise DecodeError(path, f"not a recognised audio format ({_sndfile_reason(exc)})") from None
    with handle:
        if handle.samplerate <= 0 or handle.channels <= 0:
            raise DecodeError(path, "audio header has no sample rate or channels")
        _check_duration(path, handle.frames, handle.samplerate, limits)
        rate = handle.samplerate
        try:
            samples = handle.read(frames=int(limits.max_audio_seconds * rate) + 1, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise DecodeError(path, f"corrupt audio data ({_sndfile_reason(exc)})") from None
    if samples.shape[0] == 0:
        raise DecodeError(path, "audio holds no samples")
    if samples.shape[0] > limits.max_audio_seconds * rate:
        raise DecodeError(path, f"audio is longer than the {limits.max_audio_seconds:g}-second limit")
    if not np.isfinite(samples).all():
        raise DecodeError(path, "audio contains NaN or infinite samples")
    return Waveform(samples[:, 0] if samples.shape[1] == 1 else samples, int(rate))


def read_text(path: str | Path, limits: DecodeLimits = DEFAULT_LIMITS, data: bytes | None = None) -> str:
    """UTF-8 text (BOM allowed); binary or oversized files are refused. ``data``, when given,
    is the file's content already read."""
    path = path if isinstance(path, Path) else Path(path)
    size = _check_file(path) if data is None else len(data)
    if size == 0:
        raise DecodeError(path, "file is empty")
    if size > limits.max_text_bytes:
        raise DecodeError(path, f"text file is {size:,} bytes, over the {limits.max_text_bytes:,}-byte limit")
    if data is None:
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
