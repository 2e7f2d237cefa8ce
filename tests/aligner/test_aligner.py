"""The aligner with real torch and open_clip modules at tiny sizes: embeddings, audio handling,
checkpoints and their failure modes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from crossmodal.aligner import AlignerCfg, create_aligner, load_aligner, save_aligner
from crossmodal.errors import CheckpointError, ConfigError
from crossmodal.ingest.decode import decode_audio
from crossmodal.media import Waveform

TINY = {
    "name": "tiny-test",
    "embed_dim": 32,
    "towers": {
        "text": {"backbone": {"type": "open_clip_text", "output_dim": 32,
                              "text_cfg": {"context_length": 16, "width": 32, "heads": 2, "layers": 1}},
                 "head": {"type": "linear"}},
        "image": {"backbone": {"type": "digit_cnn", "channels": [8, 16], "output_dim": 32},
                  "head": {"type": "mlp", "hidden_dim": 32}},
        "audio": {"backbone": {"type": "audio_cnn", "channels": [8, 16, 16, 16], "output_dim": 32},
                  "head": {"type": "mlp", "hidden_dim": 32}},
    },
}


@pytest.fixture(scope="module")
def tiny():
    return create_aligner(AlignerCfg.from_dict(json.loads(json.dumps(TINY))))


def _tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-((t - seconds / 2) ** 2))).astype(np.float32)
    return mono if channels == 1 else np.stack([mono] * channels, axis=1)


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray((rng.random((28, 28)) * 255).astype(np.uint8)) for _ in range(3)]


def test_embeddings_are_normalised_float32(tiny):
    for vectors in (tiny.embed_texts(["seven", "a cat"]), tiny.embed_images(_images()),
                    tiny.embed_audio_clips([Waveform(_tone(0.5, 8000), 8000)])):
        assert vectors.dtype == np.float32
        assert vectors.shape[1] == 32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_saved_and_reloaded_model_reproduces_embeddings_exactly(tiny, tmp_path):
    save_aligner(tiny, tmp_path / "ck", trained_on={"note": "test"}, metrics={"x": 1})
    again = load_aligner(tmp_path / "ck")
    texts = ["the digit seven", "7", "someone saying three"]
    clips = [Waveform(_tone(0.7, 16000), 16000), Waveform(_tone(2.5, 8000), 8000)]
    assert np.array_equal(tiny.embed_texts(texts), again.embed_texts(texts))
    assert np.array_equal(tiny.embed_images(_images()), again.embed_images(_images()))
    assert np.array_equal(tiny.embed_audio_clips(clips), again.embed_audio_clips(clips))
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert config["trained_on"] == {"note": "test"}
    assert config["preprocess"]["audio"]["sample_rate"] == 8000
    assert again.model_id.startswith("tiny-test@")


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_audio_at_common_rates_embeds(tiny, rate):
    vectors = tiny.embed_audio_clips([Waveform(_tone(1.0, rate), rate)])
    assert vectors.shape == (1, 32) and np.isfinite(vectors).all()


def test_rate_is_resampled_not_ignored(tiny):
    """The same sound at two rates lands nearly on the same vector."""
    a = tiny.embed_audio_clips([Waveform(_tone(1.0, 8000), 8000)])[0]
    b = tiny.embed_audio_clips([Waveform(_tone(1.0, 44100), 44100)])[0]
    assert float(a @ b) > 0.98


def test_stereo_short_and_long_audio(tiny, tmp_path):
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, _tone(1.0, 44100, channels=2), 44100)
    wave = decode_audio(stereo)
    assert wave.channels == 2
    assert tiny.embed_audio([wave])[0].vectors.shape == (1, 32)
    short = tiny.embed_audio([Waveform(_tone(0.1, 48000), 48000)])[0]
    assert short.vectors.shape == (1, 32)
    rng = np.random.default_rng(1)
    long_wave = Waveform((0.1 * rng.standard_normal(60 * 22050)).astype(np.float32), 22050)
    long = tiny.embed_audio([long_wave])[0]
    assert long.vectors.shape[0] >= 58
    assert long.starts[0] == pytest.approx(0.0, abs=0.1)
    assert long.ends[-1] == pytest.approx(60.0, abs=0.1)
    assert np.all(long.ends - long.starts == pytest.approx(2.0))
    assert np.all(np.diff(long.starts) > 0)


def test_silence_around_a_sound_is_trimmed(tiny):
    rate = 8000
    sound = _tone(0.4, rate)
    padded = np.concatenate([np.zeros(rate * 3, np.float32), sound, np.zeros(rate * 3, np.float32)])
    emb = tiny.embed_audio([Waveform(padded, rate)])[0]
    assert emb.vectors.shape[0] == 1
    assert 2.8 < emb.starts[0] < 3.05 and 3.35 < emb.ends[0] < 3.6


def test_unusable_audio_raises_clear_errors(tiny):
    with pytest.raises(ValueError, match="no samples"):
        tiny.embed_audio([Waveform(np.zeros(0, np.float32), 8000)], sources=["empty.wav"])
    with pytest.raises(ValueError, match="bad.wav.*NaN"):
        tiny.embed_audio([Waveform(np.full(800, np.nan, np.float32), 8000)], sources=["bad.wav"])


def test_image_modes_all_embed(tiny):
    rgba = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    rgba.paste((0, 0, 0, 255), (10, 5, 20, 25))
    grey16 = Image.fromarray((np.arange(28 * 28).reshape(28, 28) * 60).astype(np.uint16))
    images = [rgba, Image.new("CMYK", (20, 20)), Image.new("P", (20, 20)), grey16, Image.new("1", (5, 5))]
    vectors = tiny.embed_images(images)
    assert np.isfinite(vectors).all()


def test_checkpoint_with_tampered_weights_is_refused(tiny, tmp_path):
    save_aligner(tiny, tmp_path / "ck")
    weights = tmp_path / "ck" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_aligner(tmp_path / "ck")


def test_checkpoint_whose_config_disagrees_with_weights_is_refused(tiny, tmp_path):
    save_aligner(tiny, tmp_path / "ck")
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    config["aligner"]["towers"]["image"]["backbone"]["channels"] = [8, 32]
    (tmp_path / "ck" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="shape"):
        load_aligner(tmp_path / "ck")


def test_missing_and_foreign_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="no trained aligner"):
        load_aligner(tmp_path / "nothing-here")
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "config.json").write_text('{"format": "something-else"}')
    with pytest.raises(CheckpointError, match="not a crossmodal aligner"):
        load_aligner(tmp_path / "ck")


def test_pickle_weights_are_never_loaded(tiny, tmp_path):
    """A checkpoint folder holding a pickle instead of safetensors is rejected, not unpickled."""
    save_aligner(tiny, tmp_path / "ck")
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    config["weights"]["sha256"] = None
    (tmp_path / "ck" / "config.json").write_text(json.dumps(config))
    (tmp_path / "ck" / "model.safetensors").write_bytes(b"\x80\x04\x95 not safetensors")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_aligner(tmp_path / "ck")


@pytest.mark.parametrize("mutation, message", [
    (lambda c: c.update(extra=1), "unknown key"),
    (lambda c: c["towers"]["image"]["backbone"].update(type="audio_cnn"), "not a image backbone"),
    (lambda c: c["towers"]["audio"]["backbone"].update(colour="red"), "colour"),
    (lambda c: c["towers"].update(video={"backbone": {}}), "unknown modality"),
    (lambda c: c["towers"]["text"].update(head={"type": "identity"}), "identity head"),
])
def test_bad_configs_name_the_problem(mutation, message):
    cfg = json.loads(json.dumps(TINY))
    cfg["towers"]["text"]["backbone"]["output_dim"] = 16
    mutation(cfg)
    with pytest.raises(ConfigError, match=message):
        create_aligner(AlignerCfg.from_dict(cfg))


def test_large_pictures_are_reduced_before_the_float_work_and_look_the_same(monkeypatch):
    """A 40-megapixel query would otherwise hold several float copies of every pixel."""
    import tracemalloc

    from PIL import ImageDraw

    from crossmodal.aligner import image_towers

    img = Image.new("RGB", (4000, 2500), (255, 255, 255))
    ImageDraw.Draw(img).ellipse([1300, 400, 2000, 1250], outline=(0, 0, 0), width=90)
    tracemalloc.start()
    reduced = image_towers.ink_centred(img)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 << 20, peak  # float work on 1000 x 625 pixels, not 4000 x 2500 (40 MB each copy)
    starter = load_aligner("starter")
    reduced_vector = starter.embed_images([img])[0]
    monkeypatch.setattr(image_towers, "INK_MAX_SIDE", 10**9)
    full_vector = starter.embed_images([img])[0]
    assert reduced.sum() > 100 and float(reduced_vector @ full_vector) > 0.999  # the same glyph to the model
