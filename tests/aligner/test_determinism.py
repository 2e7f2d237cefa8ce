"""A vector is a function of its input alone: embedded alone, among shorter companions or among
longer ones, the same clip, image or text gets the same vector (cosine >= 0.99999), also when the
caller left the model in training mode. Real files from the demo corpus, the shipped model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from crossmodal.aligner import Aligner, AlignerCfg, create_aligner, load_aligner
from crossmodal.aligner.audio_towers import AudioCnnBackbone
from crossmodal.demo.showcase import CORPUS_DIR, CORPUS_LIST
from crossmodal.media import Waveform

MIN_COSINE = 0.99999
RATE = 8000


@pytest.fixture(scope="module")
def model() -> Aligner:
    """Our own copy of the starter model: these tests switch its mode."""
    return load_aligner("starter")


@contextmanager
def left_in(model: Aligner, mode: str) -> Iterator[Aligner]:
    """The model as a caller left it (``eval`` or ``train``): inference must not care, and must
    not change it."""
    model.train(mode == "train")
    try:
        yield model
        assert all(m.training == (mode == "train") for m in model.modules())
    finally:
        model.eval()


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _clips() -> list[np.ndarray]:
    clips = []
    for path in sorted((CORPUS_DIR / "audio").glob("*.wav"))[::30]:
        samples, rate = sf.read(path, dtype="float32")
        assert rate == RATE
        clips.append(samples)
    return clips


def _audio_cases() -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Targets (a spoken digit, a trimmed one, three digits in a row), companions shorter than
    every target, and companions longer than every target's windows."""
    clips = _clips()
    targets = [clips[0], clips[1][: int(0.6 * clips[1].size)], np.concatenate(clips[2:5])]
    shorter = [c[: int(0.3 * RATE)] for c in clips[5:]]
    longer = [np.concatenate([c, clips[5], c]) for c in clips[6:]]
    return targets, shorter, longer


def _check_audio(model: Aligner, target: np.ndarray, companions: list[np.ndarray], alone) -> None:
    for pos in (0, len(companions) // 2):
        batch = [Waveform(c, RATE) for c in companions[:pos]] + [Waveform(target, RATE)] + \
            [Waveform(c, RATE) for c in companions[pos:]]
        got = model.embed_audio(batch)[pos]
        np.testing.assert_array_equal(got.starts, alone.starts)
        assert _cosines(got.vectors, alone.vectors).min() >= MIN_COSINE
        assert _cosines(got.clip_vector, alone.clip_vector) >= MIN_COSINE


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_audio_vector_does_not_depend_on_its_companions(model, mode):
    targets, shorter, longer = _audio_cases()
    with left_in(model, mode):
        for target in targets:
            alone = model.embed_audio([Waveform(target, RATE)])[0]
            _check_audio(model, target, shorter, alone)
            _check_audio(model, target, longer, alone)
            _check_audio(model, target, shorter + longer, alone)


def test_audio_backbone_batch_equals_one_by_one(model):
    """The padded batch (what training and indexing run) gives each clip its lone features."""
    backbone: AudioCnnBackbone = model.tower("audio").backbone
    targets, shorter, longer = _audio_cases()
    chunks = [w.samples for c in targets + shorter + longer
              for w in backbone.windows(Waveform(c, RATE))]
    with torch.inference_mode():
        batched = backbone(*backbone.collate(chunks)).numpy()
        lone = np.concatenate([backbone(*backbone.collate([c])).numpy() for c in chunks])
    assert _cosines(batched, lone).min() >= MIN_COSINE


def _images() -> list[Image.Image]:
    paths = sorted((CORPUS_DIR / "images").glob("*.png"))[::20]
    return [Image.open(p).convert("L") for p in paths]


def test_image_vector_does_not_depend_on_its_companions(model):
    """Smaller and larger pictures as companions, the model left in eval and in train mode
    (where BatchNorm would otherwise use the batch's own statistics)."""
    images = _images()
    targets, others = images[:3], images[3:]
    smaller = [im.resize((14, 14)) for im in others]
    larger = [im.resize((112, 112)) for im in others]
    for mode in ("eval", "train"):
        with left_in(model, mode):
            for target in targets:
                alone = model.embed_images([target])[0]
                for companions in (smaller, larger, smaller + larger):
                    for pos in (0, len(companions) // 2):
                        batch = companions[:pos] + [target] + companions[pos:]
                        assert _cosines(model.embed_images(batch)[pos], alone) >= MIN_COSINE, (mode, pos)


def _texts() -> list[str]:
    rows = [json.loads(line) for line in CORPUS_LIST.read_text(encoding="utf-8").splitlines()]
    return [r["text"] for r in rows if r["modality"] == "text"]


def _text_model_with_dropout(model: Aligner) -> Aligner:
    """The starter's weights under a text head with dropout, as a user's config may have."""
    data = model.cfg.to_dict()
    data["towers"]["text"]["head"]["dropout"] = 0.2
    other = create_aligner(AlignerCfg.from_dict(data))
    other.load_state_dict(model.state_dict())
    return other


def test_text_vector_does_not_depend_on_its_companions(model):
    """Shorter and longer texts as companions, the shipped model and one whose text head has
    dropout, each left in eval and in train mode (where dropout would otherwise be random)."""
    texts = _texts()
    targets = texts[:3]
    shorter = [t.split()[0] for t in texts[3:12]]
    longer = [" ".join(texts[i:i + 3]) for i in range(3, 12)]
    for embedder in (model, _text_model_with_dropout(model)):
        for mode in ("eval", "train"):
            with left_in(embedder, mode):
                for target in targets:
                    alone = embedder.embed_texts([target])[0]
                    for companions in (shorter, longer, shorter + longer):
                        for pos in (0, len(companions) // 2):
                            batch = companions[:pos] + [target] + companions[pos:]
                            assert _cosines(embedder.embed_texts(batch)[pos], alone) >= MIN_COSINE, (mode, pos)
