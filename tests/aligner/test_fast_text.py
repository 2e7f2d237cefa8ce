"""The query text encoder (`aligner.fast_text`) against the model's own forward: the trimmed fp32
path gives the same vectors to rounding, the int8 path vectors close enough to rank a small
corpus the same way, on the shipped starter model (trained: its rankings mean something) and on
crossmodal's tiny open_clip ViT (random weights, built the way `open_clip:ARCH/FILE` is); the
batching of concurrent queries changes nothing; ``[search] text_tower`` picks the path."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support.media import corpus_files
from torch import nn

from crossmodal.aligner.fast_text import QueryTextEncoder
from crossmodal.aligner.quantise import PackedSelfAttention
from crossmodal.core import Engine, query_from_fields
from crossmodal.errors import ConfigError
from crossmodal.settings import Settings

TEXTS = ["the digit seven", "a handwritten 3", "someone saying nine", "zero", "the number two, written by hand",
         "eight", "a picture of a four", "one", "five!", "six six six"]


def _gallery(aligner) -> np.ndarray:
    images = [Image.open(p).convert("RGB") for d in "0123456789" for p in corpus_files("image", d, 3)]
    return aligner.embed_images(images)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


@pytest.mark.parametrize("which", ["starter", "tiny_vit"])
def test_fp32_trimmed_is_the_same_function(which, request) -> None:
    aligner = request.getfixturevalue(which)
    encoder = QueryTextEncoder(aligner, "fp32")
    assert encoder.trimmed
    full = aligner.embed_texts(TEXTS)
    one_by_one = np.concatenate([encoder.embed_now([t]) for t in TEXTS])
    batched = encoder.embed_now(TEXTS)  # padded to the longest text of the batch
    assert _cosines(full, one_by_one).min() > 0.99999
    assert np.abs(full - batched).max() < 1e-5
    gallery = _gallery(aligner)
    assert (np.argsort(-(full @ gallery.T), axis=1) == np.argsort(-(one_by_one @ gallery.T), axis=1)).all()


@pytest.mark.parametrize("which, bound", [("starter", 0.995), ("tiny_vit", 0.99)])
def test_int8_ranks_a_small_corpus_as_fp32_does(which, bound, request) -> None:
    aligner = request.getfixturevalue(which)
    encoder = QueryTextEncoder(aligner, "int8")
    assert any("quantized" in type(m).__module__ for m in encoder._module.modules())
    assert not any(isinstance(m, nn.MultiheadAttention) for m in encoder._module.modules())
    full = aligner.embed_texts(TEXTS)
    fast = np.concatenate([encoder.embed_now([t]) for t in TEXTS])
    assert _cosines(full, fast).min() >= bound
    gallery = _gallery(aligner)
    ref, got = np.argsort(-(full @ gallery.T), axis=1), np.argsort(-(fast @ gallery.T), axis=1)
    # the trained starter's first places are decided; random weights leave near-ties (gaps of 1e-5) to flip
    assert (ref[:, 0] == got[:, 0]).mean() >= (1.0 if which == "starter" else 0.8)
    overlap = [len(set(ref[i, :10]) & set(got[i, :10])) for i in range(len(TEXTS))]
    assert min(overlap) >= 9, overlap
    # the model's own weights are untouched: indexing still computes fp32 vectors
    assert np.array_equal(aligner.embed_texts(TEXTS), full)


def test_rebuilt_attention_computes_what_torch_does() -> None:
    torch.manual_seed(0)
    for batch_first in (True, False):
        mha = nn.MultiheadAttention(32, 4, batch_first=batch_first).eval()
        x = torch.randn(3, 7, 32) if batch_first else torch.randn(7, 3, 32)
        mask = torch.full((7, 7), float("-inf")).triu_(1)
        with torch.inference_mode():
            want = mha(x, x, x, need_weights=False, attn_mask=mask)[0]
            got = PackedSelfAttention(mha)(x, x, x, need_weights=False, attn_mask=mask)[0]
        assert torch.allclose(want, got, atol=1e-5)


@pytest.mark.parametrize("lanes", [1, 3])
def test_concurrent_queries_share_forwards_and_get_their_own_vectors(starter, lanes) -> None:
    encoder = QueryTextEncoder(starter, "fp32", lanes=lanes)
    want = {t: encoder.embed_now([t])[0] for t in TEXTS}
    got: dict[str, np.ndarray] = {}
    forwards = []
    original = encoder.embed_now

    def counted(texts):
        forwards.append(len(texts))
        return original(texts)

    encoder.embed_now = counted
    start = threading.Barrier(len(TEXTS))

    def ask(t: str) -> None:
        start.wait()
        for _ in range(5):
            got[t] = encoder.embed_texts([t])[0]

    threads = [threading.Thread(target=ask, args=(t,)) for t in TEXTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(forwards) == 5 * len(TEXTS) and len(forwards) < 5 * len(TEXTS)  # some forwards were shared
    for t in TEXTS:
        assert np.abs(got[t] - want[t]).max() < 1e-5


def test_an_error_reaches_every_waiting_query(starter) -> None:
    encoder = QueryTextEncoder(starter, "fp32")
    encoder.embed_now = lambda texts: (_ for _ in ()).throw(RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        encoder.embed_texts(["x"])
    encoder.embed_now = QueryTextEncoder(starter, "fp32").embed_now
    assert encoder.embed_texts(["x"]).shape == (1, starter.embed_dim)  # not stuck


def test_the_setting_picks_the_path(tmp_path: Path, starter) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    for name, text in {"a.txt": "the digit seven", "b.txt": "a dog barking", "c.txt": "rain at night"}.items():
        (notes / name).write_text(text)
    with Engine.open(tmp_path / "c", create=True, settings=Settings(), aligner=starter) as engine:
        engine.index([notes], progress=False)
    tops = {}
    for mode in ("fp32", "int8"):
        settings = Settings().updated(search={"text_tower": mode})
        with Engine.open(tmp_path / "c", settings=settings, aligner=starter) as engine:
            engine.load()
            encoder = engine.planner.text_encoder()
            assert encoder.mode == mode and encoder.trimmed
            assert any("quantized" in type(m).__module__ for m in encoder._module.modules()) == (mode == "int8")
            assert encoder.quantised == (mode == "int8")
            hits = engine.search(query_from_fields({"text": "seven", "k": 3, "targets": "text"})).results
            tops[mode] = [h.id for h in hits]
    assert tops["fp32"] == tops["int8"]
    # a one-shot search (no Engine.load) does not spend seconds quantising for one query
    with Engine.open(tmp_path / "c", settings=Settings(), aligner=starter) as engine:
        engine.search(query_from_fields({"text": "seven", "k": 3, "targets": "text"}))
        assert engine.planner.text_encoder().mode == "fp32"
        engine.load()
        assert engine.planner.text_encoder().mode == "int8"
    with pytest.raises(ConfigError, match="text_tower"):
        settings = Settings().updated(search={"text_tower": "fp16"})
        with Engine.open(tmp_path / "c", settings=settings, aligner=starter) as engine:
            engine.load()
