"""Decoding real image, audio and text files written in tmp_path, and the DecodeError each
kind of bad file turns into (always naming the file)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from support.media import png_with_claimed_size

from crossmodal.errors import CrossmodalError, DecodeError
from crossmodal.ingest.decode import (
    DEFAULT_LIMITS,
    DecodeLimits,
    _pcm_wav,
    _read_bounded,
    decode_audio,
    decode_image,
    image_pixel_bytes,
    ingest_limits,
    read_small_file,
    read_text,
)
from crossmodal.media import Waveform
from crossmodal.settings import IngestSettings

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _gradient(width: int = 12, height: int = 8) -> Image.Image:
    """An RGB image whose every pixel is different, so lossless round trips can be compared exactly."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 20 % 256, y * 30 % 256, (x + y) * 7 % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb)


def _assert_names(exc: pytest.ExceptionInfo, path: Path) -> None:
    assert isinstance(exc.value, CrossmodalError)
    assert exc.value.path == str(path)
    assert str(path) in str(exc.value)
    assert str(exc.value) == f"{path}: {exc.value.reason}"


# --------------------------------------------------------------------------- errors module


def _decode_image(path: Path, in_memory: bool, limits: DecodeLimits = DEFAULT_LIMITS) -> Image.Image:
    """The decoder reading the file itself, or handed its bytes as the indexer does."""
    return decode_image(path, limits, data=path.read_bytes() if in_memory else None)


IN_MEMORY = pytest.mark.parametrize("in_memory", [False, True], ids=["from-path", "from-bytes"])


def test_decode_error_message_and_attributes():
    err = DecodeError(Path("/data/a.png"), "file is empty")
    assert err.path == "/data/a.png"
    assert err.reason == "file is empty"
    assert str(err) == "/data/a.png: file is empty"
    assert isinstance(err, CrossmodalError)


def test_default_limits():
    assert DEFAULT_LIMITS == DecodeLimits()
    assert DEFAULT_LIMITS.max_image_pixels == 64_000_000
    assert DEFAULT_LIMITS.max_audio_seconds == 3 * 3600.0
    assert DEFAULT_LIMITS.max_text_bytes == 20_000_000


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize("fmt,suffix", [("PNG", ".png"), ("BMP", ".bmp"), ("TIFF", ".tif"),
                                        ("WEBP", ".webp")])
def test_lossless_formats_decode_exactly(tmp_path, fmt, suffix):
    original = _gradient()
    path = tmp_path / f"img{suffix}"
    original.save(path, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    img = decode_image(path)
    assert img.size == (12, 8)
    assert np.array_equal(np.asarray(img.convert("RGB")), np.asarray(original))


def test_jpeg_decodes(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (30, 20), (200, 40, 90)).save(path, quality=95)
    img = decode_image(str(path))
    assert img.mode == "RGB"
    assert img.size == (30, 20)
    assert np.abs(np.asarray(img, dtype=int) - [200, 40, 90]).max() <= 3


@IN_MEMORY
def test_image_is_fully_loaded_and_independent_of_the_file(tmp_path, in_memory):
    path = tmp_path / "img.png"
    _gradient().save(path)
    img = _decode_image(path, in_memory)
    path.unlink()
    assert img.getpixel((3, 2)) == (60, 60, 35)


@IN_MEMORY
def test_animated_gif_returns_first_frame(tmp_path, in_memory):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (8, 6), colour) for colour in (RED, GREEN, BLUE)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(path) as check:
        assert check.n_frames == 3
    img = _decode_image(path, in_memory)
    assert img.size == (8, 6)
    assert img.convert("RGB").getpixel((4, 3)) == RED
    assert getattr(img, "n_frames", 1) == 1


@IN_MEMORY
def test_exif_orientation_is_applied(tmp_path, in_memory):
    # Left half red, right half blue; Orientation 6 means "rotate 90 degrees clockwise to display",
    # so the displayed image is portrait with red on top.
    rgb = np.zeros((20, 40, 3), dtype=np.uint8)
    rgb[:, :20] = RED
    rgb[:, 20:] = BLUE
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(rgb).save(path, exif=exif, quality=95)
    with Image.open(path) as raw:
        assert raw.size == (40, 20)
        assert raw.getexif()[0x0112] == 6
    img = _decode_image(path, in_memory)
    assert img.size == (20, 40)
    top = np.asarray(img.getpixel((10, 5)), dtype=int)
    bottom = np.asarray(img.getpixel((10, 34)), dtype=int)
    assert np.abs(top - RED).max() < 40
    assert np.abs(bottom - BLUE).max() < 40
    assert img.getexif().get(0x0112) in (None, 1)


def test_jpeg_without_exif_keeps_its_size(tmp_path):
    path = tmp_path / "plain.jpg"
    Image.new("RGB", (40, 20), RED).save(path)
    assert decode_image(path).size == (40, 20)


def test_palette_image_decodes(tmp_path):
    path = tmp_path / "pal.png"
    img = Image.new("P", (6, 4), 1)
    img.putpalette([0, 0, 0, 10, 200, 30] + [0, 0, 0] * 254)
    img.save(path)
    out = decode_image(path)
    assert out.mode == "P"
    assert out.convert("RGB").getpixel((2, 2)) == (10, 200, 30)


@pytest.mark.parametrize("mode,colour", [("RGBA", (1, 2, 3, 4)), ("LA", (17, 200))])
def test_alpha_images_decode(tmp_path, mode, colour):
    path = tmp_path / f"alpha_{mode}.png"
    Image.new(mode, (5, 4), colour).save(path)
    out = decode_image(path)
    assert out.mode == mode
    assert out.getpixel((4, 3)) == colour


def test_16_bit_image_decodes(tmp_path):
    values = (np.arange(48, dtype="<u2") * 1000).reshape(6, 8)
    path = tmp_path / "deep.png"
    Image.frombytes("I;16", (8, 6), values.tobytes()).save(path)
    out = decode_image(path)
    assert out.mode == "I;16"
    assert out.size == (8, 6)
    assert out.getpixel((7, 5)) == 47000
    assert out.getpixel((1, 0)) == 1000


@pytest.mark.parametrize("suffix", [".jpg", ".tif"])
def test_cmyk_image_decodes(tmp_path, suffix):
    path = tmp_path / f"cmyk{suffix}"
    Image.new("CMYK", (5, 4), (10, 20, 30, 40)).save(path)
    out = decode_image(path)
    assert out.mode == "CMYK"
    assert out.size == (5, 4)
    assert np.abs(np.asarray(out.getpixel((2, 2))) - [10, 20, 30, 40]).max() <= 3


@IN_MEMORY
def test_truncated_png_raises(tmp_path, in_memory):
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError) as exc:
        _decode_image(path, in_memory)
    _assert_names(exc, path)
    assert "truncated" in exc.value.reason


def test_text_renamed_png_raises(tmp_path):
    path = tmp_path / "fake.png"
    path.write_text("this is not an image\n")
    with pytest.raises(DecodeError) as exc:
        decode_image(path)
    _assert_names(exc, path)
    assert exc.value.reason == "not a recognised image format"


@pytest.mark.parametrize("decoder", [decode_image, decode_audio, read_text])
def test_empty_file_raises(tmp_path, decoder):
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    with pytest.raises(DecodeError) as exc:
        decoder(path)
    _assert_names(exc, path)
    assert exc.value.reason == "file is empty"


@pytest.mark.parametrize("decoder", [decode_image, decode_audio, read_text])
def test_missing_file_raises(tmp_path, decoder):
    path = tmp_path / "nowhere" / "missing.png"
    with pytest.raises(DecodeError) as exc:
        decoder(path)
    _assert_names(exc, path)
    assert exc.value.reason == "file does not exist"


@pytest.mark.parametrize("decoder", [decode_image, decode_audio, read_text])
def test_directory_raises(tmp_path, decoder):
    path = tmp_path / "folder.png"
    path.mkdir()
    with pytest.raises(DecodeError) as exc:
        decoder(path)
    _assert_names(exc, path)
    assert exc.value.reason == "not a regular file"


@IN_MEMORY
def test_image_over_pixel_limit_raises(tmp_path, in_memory):
    path = tmp_path / "big.png"
    Image.new("RGB", (50, 40), RED).save(path)
    with pytest.raises(DecodeError) as exc:
        _decode_image(path, in_memory, DecodeLimits(max_image_pixels=1999))
    _assert_names(exc, path)
    assert "50x40" in exc.value.reason
    assert decode_image(path, DecodeLimits(max_image_pixels=2000)).size == (50, 40)


@IN_MEMORY
@pytest.mark.parametrize("width,height", [(10_000, 10_000), (20_000, 20_000)])
def test_decompression_bomb_guard_stays_on(tmp_path, in_memory, width, height):
    # 100 M pixels trips Pillow's warning, 400 M its error; both must become DecodeError even when
    # the caller's own limit is generous.
    path = tmp_path / "bomb.png"
    png_with_claimed_size(path, width, height)
    with pytest.raises(DecodeError) as exc:
        _decode_image(path, in_memory, DecodeLimits(max_image_pixels=10**10))
    _assert_names(exc, path)
    assert "too large" in exc.value.reason


def test_claimed_size_over_own_limit_is_refused_before_decoding(tmp_path):
    path = tmp_path / "claims.png"
    png_with_claimed_size(path, 5000, 5000)
    with pytest.raises(DecodeError) as exc:
        decode_image(path, DecodeLimits(max_image_pixels=1_000_000))
    _assert_names(exc, path)
    assert "5000x5000" in exc.value.reason


# --------------------------------------------------------------------------- audio


def _tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_wav_rates_decode(tmp_path, rate):
    path = tmp_path / f"tone_{rate}.wav"
    samples = _tone(0.25, rate)
    sf.write(path, samples, rate, subtype="PCM_16")
    wave = decode_audio(path)
    assert isinstance(wave, Waveform)
    assert wave.sample_rate == rate
    assert wave.channels == 1
    assert wave.samples.ndim == 1
    assert wave.samples.dtype == np.float32
    assert wave.samples.shape == (samples.shape[0],)
    assert wave.duration == pytest.approx(0.25, abs=1 / rate)
    assert np.abs(wave.samples - samples).max() <= 1 / 32768 + 1e-7


def test_stereo_wav_keeps_channels(tmp_path):
    path = tmp_path / "stereo.wav"
    left, right = _tone(0.2, 16000, 440), _tone(0.2, 16000, 1000) * 0.5
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    wave = decode_audio(path)
    assert wave.sample_rate == 16000
    assert wave.channels == 2
    assert wave.samples.shape == (3200, 2)
    assert np.array_equal(wave.samples[:, 0], left)
    assert np.array_equal(wave.samples[:, 1], right)


def test_flac_decodes_losslessly(tmp_path):
    path = tmp_path / "tone.flac"
    samples = np.round(_tone(0.3, 22050) * 32767) / 32768
    sf.write(path, np.stack([samples, -samples], axis=1), 22050, subtype="PCM_16")
    wave = decode_audio(path)
    assert wave.sample_rate == 22050
    assert wave.channels == 2
    assert wave.samples.shape == (6615, 2)
    np.testing.assert_allclose(wave.samples[:, 0], samples, atol=1e-6)
    np.testing.assert_allclose(wave.samples[:, 1], -samples, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 2])
def test_ogg_vorbis_decodes(tmp_path, channels):
    path = tmp_path / f"tone{channels}.ogg"
    mono = _tone(1.0, 44100)
    sf.write(path, mono if channels == 1 else np.stack([mono] * channels, axis=1), 44100)
    wave = decode_audio(path)
    assert wave.sample_rate == 44100
    assert wave.channels == channels
    assert wave.samples.shape[0] == 44100
    assert np.isfinite(wave.samples).all()
    # lossy, but still a loud tone rather than silence or garbage
    rms = float(np.sqrt(np.mean(np.square(wave.samples))))
    assert 0.3 < rms < 0.4


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT"])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("container", ["WAV", "WAVEX"])
def test_wav_in_memory_gives_the_same_samples_as_libsndfile(tmp_path, subtype, channels, container):
    """Bytes already read take the standard-library parser where it applies; every encoding
    gives exactly what libsndfile reads from the file."""
    path = tmp_path / "tone.wav"
    mono = _tone(0.3, 11025)
    sf.write(path, mono if channels == 1 else np.stack([mono, -0.5 * mono], axis=1), 11025,
             subtype=subtype, format=container)
    from_file = decode_audio(path)
    in_memory = decode_audio(path, data=path.read_bytes())
    assert in_memory.sample_rate == from_file.sample_rate == 11025
    assert in_memory.samples.dtype == np.float32 and in_memory.samples.shape == from_file.samples.shape
    assert np.array_equal(in_memory.samples, from_file.samples)
    fast = subtype in ("PCM_U8", "PCM_16", "PCM_32") and container == "WAV"
    assert (_pcm_wav(path, path.read_bytes(), DecodeLimits()) is not None) == fast


def test_wav_in_memory_keeps_every_check(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, _tone(2.0, 8000), 8000, subtype="PCM_16")
    data = path.read_bytes()
    with pytest.raises(DecodeError) as exc:
        decode_audio(path, DecodeLimits(max_audio_seconds=1.5), data=data)
    assert "limit" in exc.value.reason
    cut = decode_audio(path, data=data[:1044])
    assert cut.samples.shape == decode_audio(_write(tmp_path / "cut.wav", data[:1044])).samples.shape
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 8000, subtype="PCM_16")
    with pytest.raises(DecodeError, match="audio holds no samples"):
        decode_audio(empty, data=empty.read_bytes())
    with pytest.raises(DecodeError, match="not a recognised audio format"):
        decode_audio(path, data=b"RIFF? no, just words in a file\n" * 4)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_text_renamed_wav_raises(tmp_path):
    path = tmp_path / "fake.wav"
    path.write_text("RIFF? no, just words in a file\n" * 4)
    with pytest.raises(DecodeError) as exc:
        decode_audio(path)
    _assert_names(exc, path)
    assert exc.value.reason.startswith("not a recognised audio format")


def test_truncated_wav_header_raises(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, _tone(0.5, 8000), 8000, subtype="PCM_16")
    path = tmp_path / "cut.wav"
    path.write_bytes(good.read_bytes()[:20])
    with pytest.raises(DecodeError) as exc:
        decode_audio(path)
    _assert_names(exc, path)


def test_wav_with_header_but_no_samples_raises(tmp_path):
    path = tmp_path / "silent.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 8000, subtype="PCM_16")
    with pytest.raises(DecodeError) as exc:
        decode_audio(path)
    _assert_names(exc, path)
    assert exc.value.reason == "audio holds no samples"


def test_audio_over_duration_limit_raises(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, _tone(2.0, 8000), 8000, subtype="PCM_16")
    with pytest.raises(DecodeError) as exc:
        decode_audio(path, DecodeLimits(max_audio_seconds=1.5))
    _assert_names(exc, path)
    assert "limit" in exc.value.reason
    assert decode_audio(path, DecodeLimits(max_audio_seconds=2.0)).samples.shape == (16000,)


def test_audio_with_nan_samples_raises(tmp_path):
    path = tmp_path / "nan.wav"
    samples = _tone(0.1, 8000)
    samples[10] = np.nan
    sf.write(path, samples, 8000, subtype="FLOAT")
    with pytest.raises(DecodeError) as exc:
        decode_audio(path)
    _assert_names(exc, path)
    assert "NaN" in exc.value.reason


# --------------------------------------------------------------------------- text


def test_plain_utf8_text(tmp_path):
    path = tmp_path / "note.txt"
    path.write_bytes("a café, naïve — 七\n".encode())
    assert read_text(path) == "a café, naïve — 七\n"


def test_utf8_bom_is_stripped(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfhello world")
    assert read_text(path) == "hello world"


def test_binary_text_raises(tmp_path):
    path = tmp_path / "blob.txt"
    path.write_bytes(b"abc\x00\x01\x02def")
    with pytest.raises(DecodeError) as exc:
        read_text(path)
    _assert_names(exc, path)
    assert exc.value.reason == "binary data, not text"


def test_invalid_utf8_raises(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(DecodeError) as exc:
        read_text(path)
    _assert_names(exc, path)
    assert "offset 3" in exc.value.reason


@pytest.mark.parametrize("content", [b" ", b"\n\n\t  \r\n", b"\xef\xbb\xbf  \n"])
def test_whitespace_only_text_raises(tmp_path, content):
    path = tmp_path / "blank.txt"
    path.write_bytes(content)
    with pytest.raises(DecodeError) as exc:
        read_text(path)
    _assert_names(exc, path)
    assert exc.value.reason == "text file holds only whitespace"


def test_text_over_size_limit_raises(tmp_path):
    path = tmp_path / "long.txt"
    path.write_bytes(b"x" * 11)
    with pytest.raises(DecodeError) as exc:
        read_text(path, DecodeLimits(max_text_bytes=10))
    _assert_names(exc, path)
    assert "11 bytes" in exc.value.reason
    assert read_text(path, DecodeLimits(max_text_bytes=11)) == "x" * 11


def test_small_files_are_read_whole_and_big_ones_left_to_the_decoder(tmp_path):
    path = tmp_path / "clip.bin"
    path.write_bytes(bytes(range(256)) * 40)
    assert read_small_file(path, 10_240) == bytes(range(256)) * 40
    assert read_small_file(path, 10_239) is None
    os.mkfifo(tmp_path / "pipe.wav")  # nobody writes to it: opening it must not wait
    (tmp_path / "folder.wav").mkdir()
    for name, reason in [("pipe.wav", "not a regular file"), ("folder.wav", "not a regular file"),
                         ("gone.wav", "file does not exist")]:
        with pytest.raises(DecodeError) as exc:
            read_small_file(tmp_path / name, 1 << 20)
        _assert_names(exc, tmp_path / name)
        assert exc.value.reason == reason
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(DecodeError, match="file is empty"):
        read_small_file(tmp_path / "empty.wav", 1 << 20)


# --------------------------------------------------------------------------- budgets in decoded bytes


def _silent_flac(path: Path, seconds: float, rate: int = 655_350, channels: int = 8) -> Path:
    """Silence at a high rate and many channels: a few KB on disk, a lot of float32 decoded."""
    with sf.SoundFile(path, "w", samplerate=rate, channels=channels, format="FLAC", subtype="PCM_16") as out:
        left = int(seconds * rate)
        block = np.zeros((min(left, 1 << 18), channels), dtype=np.int16)
        while left:
            out.write(block[:min(left, len(block))])
            left -= min(left, len(block))
    return path


def _promise_frames(path: Path, frames: int) -> None:
    """Rewrite a FLAC's STREAMINFO total-samples field (its last 36 bits before the MD5)."""
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC"
    field = int.from_bytes(data[18:26], "big")
    data[18:26] = ((field >> 36 << 36) | frames).to_bytes(8, "big")
    path.write_bytes(bytes(data))


def _peak_traced(func) -> tuple[BaseException | None, int]:
    """Run ``func``; what it raised, and the most memory it held at once (numpy and Pillow
    buffers included, as tracemalloc sees them)."""
    import tracemalloc

    tracemalloc.start()
    try:
        func()
        raised = None
    except DecodeError as exc:
        raised = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return raised, peak


QUERY_LIMITS = DecodeLimits(max_image_pixels=40_000_000, max_audio_seconds=60.0,
                            max_image_bytes=64 << 20, max_audio_bytes=64 << 20)


def test_default_budgets_are_the_ingest_settings():
    assert DEFAULT_LIMITS == ingest_limits(IngestSettings())
    custom = IngestSettings(max_image_pixels=3, max_audio_seconds=4.0, max_text_bytes=5, max_image_bytes=1,
                            max_audio_bytes=2)
    assert ingest_limits(custom) == DecodeLimits(max_image_pixels=3, max_audio_seconds=4.0, max_text_bytes=5,
                                                 max_image_bytes=1, max_audio_bytes=2)


@pytest.mark.parametrize("mode,size", [("1", 1), ("L", 1), ("P", 1), ("I;16", 2), ("LA", 4), ("RGB", 4),
                                       ("RGBA", 4), ("CMYK", 4), ("YCbCr", 4), ("I", 4), ("F", 4)])
def test_pixel_bytes_are_what_pillow_stores(mode, size):
    assert image_pixel_bytes(mode) == size


@IN_MEMORY
def test_image_over_the_decoded_byte_budget_is_refused(tmp_path, in_memory):
    path = tmp_path / "rgb.png"
    Image.new("RGB", (50, 40), RED).save(path)  # 50 x 40 x 4 bytes = 8,000 decoded
    with pytest.raises(DecodeError) as exc:
        _decode_image(path, in_memory, DecodeLimits(max_image_bytes=7999))
    _assert_names(exc, path)
    assert "50x40 RGB" in exc.value.reason and "limit on a decoded image" in exc.value.reason
    assert _decode_image(path, in_memory, DecodeLimits(max_image_bytes=8000)).size == (50, 40)
    grey = tmp_path / "grey.png"
    Image.new("L", (50, 40), 9).save(grey)  # the same pixels in one byte each
    assert _decode_image(grey, in_memory, DecodeLimits(max_image_bytes=2000)).size == (50, 40)


@IN_MEMORY
def test_40_megapixels_promised_by_a_tiny_png_are_refused_from_the_header(tmp_path, in_memory):
    path = tmp_path / "claims.png"
    png_with_claimed_size(path, 8000, 5000)  # 4x4 pixels of data: decoding it would fail as truncated
    raised, peak = _peak_traced(lambda: _decode_image(path, in_memory, replace(QUERY_LIMITS, max_image_bytes=32 << 20)))
    assert isinstance(raised, DecodeError) and raised.path == str(path)
    assert "8000x5000 L, 38 MiB decoded, over the 32 MiB limit on a decoded image" in raised.reason
    assert peak < 1 << 20


@IN_MEMORY
def test_flac_promising_a_huge_decode_is_refused_before_reading(tmp_path, in_memory):
    path = _silent_flac(tmp_path / "silence.flac", 1.0)  # 655,350 Hz x 8 channels: 20 MiB as float32
    assert path.stat().st_size < 64_000
    limits = DecodeLimits(max_audio_bytes=16 << 20)
    raised, peak = _peak_traced(lambda: decode_audio(path, limits, path.read_bytes() if in_memory else None))
    assert isinstance(raised, DecodeError) and raised.path == str(path)
    assert raised.reason == ("audio would decode to 20 MiB (655,350 Hz x 8 channels x 1.0 s as float32), "
                             "over the 16 MiB limit on decoded audio")
    assert peak < path.stat().st_size + (1 << 20)
    wave = decode_audio(path, DecodeLimits(max_audio_bytes=655_350 * 8 * 4))
    assert wave.samples.shape == (655_350, 8) and not wave.samples.any()


def test_a_header_promising_more_than_the_file_holds_is_judged_by_its_promise(tmp_path):
    path = _silent_flac(tmp_path / "liar.flac", 0.1)
    _promise_frames(path, 30 * 655_350)  # 30 s: under the query's 60-second limit, 600 MiB decoded
    with pytest.raises(DecodeError) as exc:
        decode_audio(path, QUERY_LIMITS, path.read_bytes())
    assert "600 MiB" in exc.value.reason and "64 MiB limit on decoded audio" in exc.value.reason


@pytest.mark.parametrize("in_memory", [False, True], ids=["from-path", "from-bytes"])
def test_wav_budget_counts_float32_not_file_bytes(tmp_path, in_memory):
    path = tmp_path / "u8.wav"
    sf.write(path, np.stack([_tone(0.5, 8000)] * 2, axis=1), 8000, subtype="PCM_U8")  # 8 KB on disk
    data = path.read_bytes() if in_memory else None
    with pytest.raises(DecodeError, match="over the 31,999 B limit on decoded audio"):
        decode_audio(path, DecodeLimits(max_audio_bytes=4000 * 2 * 4 - 1), data)
    assert decode_audio(path, DecodeLimits(max_audio_bytes=4000 * 2 * 4), data).samples.shape == (4000, 2)


class _Stream:
    """A decoder handle that promises ``frames`` and then yields ``holds`` frames of 0.25 (a
    header that lies, or an MP3 length estimate), with a NaN at ``nan_at`` if given."""

    def __init__(self, frames: int, holds: int, channels: int = 2, nan_at: int | None = None) -> None:
        self.frames, self.holds, self.channels, self.samplerate = frames, holds, channels, 8000
        self.nan_at, self.pos, self.largest = nan_at, 0, 0

    def read(self, out: np.ndarray) -> np.ndarray:
        self.largest = max(self.largest, out.base.nbytes if out.base is not None else out.nbytes)
        n = min(len(out), self.holds - self.pos)
        out[:n] = 0.25
        if self.nan_at is not None and self.pos <= self.nan_at < self.pos + n:
            out[self.nan_at - self.pos] = np.nan
        self.pos += n
        return out[:n]


def test_audio_holding_more_than_its_header_said_stops_at_the_budget():
    budget = 1 << 20
    endless = _Stream(frames=100, holds=10**12)
    with pytest.raises(DecodeError, match="holds more than its header said, over the 1.0 MiB limit"):
        _read_bounded(endless, Path("liar.mp3"), DecodeLimits(max_audio_bytes=budget))
    assert endless.pos <= budget // 8 + 1 and endless.largest <= budget
    with pytest.raises(DecodeError, match="longer than the 2-second limit"):
        _read_bounded(_Stream(frames=0, holds=10**12), Path("x.mp3"), DecodeLimits(max_audio_seconds=2.0))
    unknown = _read_bounded(_Stream(frames=0, holds=50_000), Path("x.mp3"), DecodeLimits(max_audio_bytes=budget))
    assert unknown.shape == (50_000, 2) and (unknown == 0.25).all()
    short = _read_bounded(_Stream(frames=90_000, holds=70_000), Path("x.mp3"), DEFAULT_LIMITS)
    assert short.shape == (70_000, 2)
    with pytest.raises(DecodeError, match="NaN"):
        _read_bounded(_Stream(frames=200_000, holds=200_000, nan_at=150_000), Path("x.mp3"), DEFAULT_LIMITS)
