"""Content fingerprints: they stay put under the changes a copy goes through, move between two
distinct items the model puts together, take every image mode and any audio, and survive
storage."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import soxr
from PIL import Image
from support.copies import write_copies
from support.media import corpus_files

from crossmodal.ingest import fingerprint
from crossmodal.ingest.decode import decode_audio, decode_image
from crossmodal.ingest.fingerprint import (
    audio_fingerprint,
    decode,
    encode,
    fingerprints,
    image_fingerprint,
    stored_prints,
)
from crossmodal.media import Waveform
from crossmodal.settings import Settings

THRESHOLD = Settings().search.duplicate_threshold


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue()))


def test_an_image_print_survives_re_encoding_resizing_and_brightness():
    original = Image.open(corpus_files("image", "5", 1)[0]).convert("L")
    base = image_fingerprint(original)
    pixels = np.asarray(original, dtype=np.float32)
    for copy in (_jpeg(original, 40), original.resize((84, 84), Image.Resampling.LANCZOS),
                 original.resize((24, 24), Image.Resampling.LANCZOS),
                 Image.fromarray(np.clip(pixels * 0.8 + 30, 0, 255).astype(np.uint8))):
        assert float(image_fingerprint(copy) @ base) >= THRESHOLD


def test_two_drawings_of_one_digit_differ(tmp_path):
    media = write_copies(tmp_path)
    one, other = (image_fingerprint(decode_image(media / name)) for name in ("three.png", "other_three.png"))
    assert float(one @ other) < THRESHOLD


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"])
def test_every_image_mode_has_a_print(mode):
    grey = Image.open(corpus_files("image", "8", 1)[0]).convert("L")
    image = grey.convert(mode) if mode not in ("I;16", "I", "F") else \
        Image.fromarray((np.asarray(grey, dtype=np.uint16) * 257).astype(np.uint16)).convert(mode)
    v = image_fingerprint(image)
    assert v is not None and v.shape == (fingerprint.IMAGE_GRID ** 2,) and abs(np.linalg.norm(v) - 1) < 1e-5
    if mode not in ("1",):
        assert float(v @ image_fingerprint(grey)) >= THRESHOLD, mode


def test_a_flat_picture_has_no_print():
    assert image_fingerprint(Image.new("RGB", (40, 30), (200, 10, 10))) is None


def test_a_sound_print_survives_codecs_volume_rate_and_padding(tmp_path):
    wave, rate = sf.read(corpus_files("audio", "3", 1)[0], dtype="float32")
    base = audio_fingerprint(Waveform(wave, rate))
    sf.write(tmp_path / "x.ogg", wave, rate, format="OGG", subtype="VORBIS")
    hi = soxr.resample(wave, rate, 44100)
    silence = np.zeros(rate, dtype=np.float32)
    for copy in (decode_audio(tmp_path / "x.ogg"), Waveform(wave * 0.3, rate),
                 Waveform(np.stack([hi, hi], axis=1), 44100), Waveform(np.concatenate([silence, wave, silence]), rate)):
        assert float(audio_fingerprint(copy) @ base) >= THRESHOLD


def test_two_takes_of_one_word_by_one_speaker_differ(tmp_path):
    media = write_copies(tmp_path)
    one, other = (audio_fingerprint(decode_audio(media / name)) for name in ("seven.wav", "seven_again.wav"))
    assert float(one @ other) < THRESHOLD


def test_silence_and_broken_samples_have_no_print():
    assert audio_fingerprint(Waveform(np.zeros(8000, dtype=np.float32), 8000)) is None
    assert audio_fingerprint(Waveform(np.array([0.1, np.nan] * 200, dtype=np.float32), 8000)) is None
    assert audio_fingerprint(Waveform(np.zeros(0, dtype=np.float32), 8000)) is None
    short = audio_fingerprint(Waveform(np.sin(np.arange(50, dtype=np.float32)), 8000))
    assert short is not None and short.shape == (fingerprint.AUDIO_STEPS * fingerprint.AUDIO_BANDS,)


def test_long_recordings_are_printed_block_by_block(monkeypatch):
    rng = np.random.default_rng(0)
    wave = Waveform((rng.normal(size=8000 * 40) * np.repeat(rng.random(400), 800)).astype(np.float32), 8000)
    whole = audio_fingerprint(wave)
    monkeypatch.setattr(fingerprint, "FRAMES_PER_BLOCK", 7)
    assert np.allclose(audio_fingerprint(wave), whole, atol=1e-5)


def test_prints_survive_storage_and_other_versions_are_ignored():
    image = Image.open(corpus_files("image", "1", 1)[0])
    entry = fingerprints(image, None)
    assert entry.keys() == {"v", "image"} and isinstance(entry["image"], str) and len(entry["image"]) < 200
    stored = stored_prints({"fingerprint": entry})
    assert float(stored["image"] @ image_fingerprint(image)) > 0.9999
    assert stored_prints({"fingerprint": {**entry, "v": 99}}) == {}
    assert stored_prints({"fingerprint": "nonsense"}) == {} and stored_prints({}) == {}
    assert decode("not base64!") is None and decode(12) is None and decode(encode(np.zeros(3) + 1e-9)) is not None
    assert fingerprints(None, None) == {}
