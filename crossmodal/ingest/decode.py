"""Decoding image, audio and text files with bounded work and errors that name the file.

Every decoder raises `DecodeError(path, reason)` for a file it cannot use, so callers can skip
one bad file and keep going. What a file may cost is counted in decoded bytes, not in its size
on disk: a 150 KB PNG can promise 40 megapixels and a 340 KB FLAC of silence a gigabyte of
samples. Each budget is checked from the header before anything large is allocated, and audio,
whose header may lie (or, for MP3, only estimate), is read in blocks that stop at the budget.
Pillow's decompression-bomb guard stays on.
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
from PIL import Image, ImageMode, ImageOps, UnidentifiedImageError

from crossmodal.errors import DecodeError
from crossmodal.media import Waveform
from crossmodal.settings import IngestSettings


@dataclass(frozen=True)
class DecodeLimits:
    """Upper bounds on what one file may cost to decode (see `IngestSettings` and
    `SearchSettings` for what each means)."""

    max_image_pixels: int = 64_000_000
    max_audio_seconds: float = 3 * 3600.0
    max_text_bytes: int = 20_000_000
    max_image_bytes: int = 256 << 20
    max_audio_bytes: int = 1 << 30


DEFAULT_LIMITS = DecodeLimits()


def ingest_limits(settings: IngestSettings) -> DecodeLimits:
    """The limits an indexing run decodes under."""
    return DecodeLimits(max_image_pixels=settings.max_image_pixels, max_audio_seconds=settings.max_audio_seconds,
                        max_text_bytes=settings.max_text_bytes, max_image_bytes=settings.max_image_bytes,
                        max_audio_bytes=settings.max_audio_bytes)


def _size(n: int) -> str:
    """A byte count as people read it: 31,999 B, 1.5 MiB, 1,200 MiB."""
    if n < 1 << 20:
        return f"{n:,} B"
    return f"{n / (1 << 20):,.0f} MiB" if n >= 10 << 20 else f"{n / (1 << 20):,.1f} MiB"


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


def image_pixel_bytes(mode: str) -> int:
    """Bytes one pixel takes in memory in a Pillow mode: bands x bytes a band, with Pillow's
    padding (two- and three-band 8-bit modes such as LA and RGB are stored in four bytes)."""
    try:
        desc = ImageMode.getmode(mode)
    except KeyError:
        return 4  # a mode Pillow has no descriptor for: count it as wide as any
    size = len(desc.bands) * np.dtype(desc.typestr.lstrip("|<>=")).itemsize
    return 4 if len(desc.bands) > 1 and size < 4 else size


def _check_image(img: Image.Image, path: Path, limits: DecodeLimits) -> None:
    """Refuse an image whose size and mode (from its header, or after loading) exceed the
    pixel or decoded-byte budget."""
    width, height = img.size
    if width * height > limits.max_image_pixels:
        raise DecodeError(path, f"image is {width}x{height}, over the {limits.max_image_pixels:,}-pixel limit")
    need = width * height * image_pixel_bytes(img.mode)
    if need > limits.max_image_bytes:
        raise DecodeError(path, f"image is {width}x{height} {img.mode}, {_size(need)} decoded, over the "
                                f"{_size(limits.max_image_bytes)} limit on a decoded image")


def _first_frame(img: Image.Image, path: Path, limits: DecodeLimits) -> Image.Image:
    _check_image(img, path, limits)  # from the header: nothing is allocated yet
    img.seek(0)
    img.load()
    _check_image(img, path, limits)  # a format that picks its size or mode only when loading
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


def _check_audio_header(path: Path, frames: int, channels: int, rate: int, limits: DecodeLimits) -> None:
    """Refuse a clip whose header promises more than the length or decoded-byte budget, before
    a sample is read (a minute of silence at 655,350 Hz x 8 channels is 1.2 GB as float32)."""
    if frames and frames / rate > limits.max_audio_seconds:
        raise DecodeError(path, f"audio lasts {frames / rate:.0f} s, over the "
                                f"{limits.max_audio_seconds:g}-second limit")
    need = frames * channels * 4
    if need > limits.max_audio_bytes:
        shape = f"{rate:,} Hz x {channels} channel{'s' if channels != 1 else ''} x {frames / rate:,.1f} s"
        raise DecodeError(path, f"audio would decode to {_size(need)} ({shape} as float32), over the "
                                f"{_size(limits.max_audio_bytes)} limit on decoded audio")


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
            _check_audio_header(path, frames, channels, rate, limits)
            raw = handle.readframes(frames)
    except (wave.Error, EOFError, struct.error, ValueError):
        return None
    if len(raw) != frames * channels * width:
        return None
    dtype, offset, scale = _PCM_SCALE[width]
    samples = np.frombuffer(raw, dtype).astype(np.float32).reshape(frames, channels)
    del raw
    if offset:
        samples -= offset
    samples /= scale  # in place: one float32 copy of the clip, not three
    return Waveform(samples[:, 0] if channels == 1 else samples, rate)


_BLOCK_FRAMES = 1 << 16
"""Frames read per call: the unit in which a lying header is caught."""


def _read_bounded(handle, path: Path, limits: DecodeLimits) -> np.ndarray:
    """Every sample as float32 (frames, channels), read in blocks into one buffer sized from the
    header. A file holding more than it promised (MP3 lengths are estimates; a header may lie)
    grows the buffer up to the budget and no further; each block is checked for NaN and
    infinities as it arrives, so no whole-clip mask is ever made."""
    channels, rate = handle.channels, handle.samplerate
    by_time = int(limits.max_audio_seconds * rate)
    most = min(by_time, limits.max_audio_bytes // (4 * channels))
    promised = handle.frames
    buf = np.empty((max(1, min(promised if promised > 0 else _BLOCK_FRAMES, most)), channels), np.float32)
    filled, refused = 0, ""
    while not refused:
        if filled == len(buf):
            if len(buf) >= most:
                if handle.read(out=np.empty((1, channels), np.float32)).shape[0]:
                    refused = (f"audio is longer than the {limits.max_audio_seconds:g}-second limit" if most == by_time
                               else f"audio holds more than its header said, over the "
                                    f"{_size(limits.max_audio_bytes)} limit on decoded audio")
                break
            bigger = np.empty((min(most, 2 * len(buf)), channels), np.float32)
            bigger[:filled] = buf
            buf = bigger
        want = min(_BLOCK_FRAMES, len(buf) - filled)
        got = handle.read(out=buf[filled:filled + want]).shape[0]
        if not np.isfinite(buf[filled:filled + got]).all():
            refused = "audio contains NaN or infinite samples"
        filled += got
        if got < want:
            break
    if refused:
        del buf  # the error's traceback keeps this frame, and so the buffer, alive
        raise DecodeError(path, refused)
    return buf[:filled] if 2 * filled >= len(buf) else buf[:filled].copy()


def decode_audio(path: str | Path, limits: DecodeLimits = DEFAULT_LIMITS, data: bytes | None = None) -> Waveform:
    """Float32 samples (frames, channels) and rate, read with soundfile (WAV, FLAC, OGG, MP3).

    The file is opened once: the header is checked against the length and decoded-byte limits
    before any samples are read, and the samples are read in blocks that stop at them.
    ``data``, when given, is the file's content already read (errors name ``path``); plain PCM
    WAV in memory takes a faster parser."""
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
        _check_audio_header(path, handle.frames, handle.channels, handle.samplerate, limits)
        rate = handle.samplerate
        try:
            samples = _read_bounded(handle, path, limits)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise DecodeError(path, f"corrupt audio data ({_sndfile_reason(exc)})") from None
    if samples.shape[0] == 0:
        raise DecodeError(path, "audio holds no samples")
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
