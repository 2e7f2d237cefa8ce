"""The image tower as indexing runs it (`aligner.index_encoder`): int8 where it pays, vectors
close to the float ones and ranked alike, one vector per file whatever it is batched with,
the original tower untouched, and ``[ingest] image_tower`` choosing the path of a real index."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.media import corpus_files
from torch import nn

from crossmodal.aligner.index_encoder import IndexEncoder, image_mode
from crossmodal.core import Engine
from crossmodal.errors import ConfigError
from crossmodal.settings import Settings


def _images(per_digit: int = 2) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for d in "0123456789" for p in corpus_files("image", d, per_digit)]


def test_auto_quantises_transformers_on_a_cpu_and_leaves_convolutions(starter, tiny_vit) -> None:
    assert image_mode(tiny_vit, "auto") == "int8"
    assert image_mode(starter, "auto") == "fp32"  # a small CNN: its Linear layers are a sliver of the work
    assert image_mode(starter, "int8") == "int8"  # asked for, it is done
    assert image_mode(tiny_vit, "fp32") == "fp32"
    with pytest.raises(ConfigError, match=r"\[ingest\] image_tower must be one of auto, fp32, int8, not 'int4'"):
        image_mode(tiny_vit, "int4")


def test_int8_ranks_images_as_fp32_does_and_leaves_the_model_alone(tiny_vit) -> None:
    images = _images()
    before = tiny_vit.embed_images(images)
    encoder = IndexEncoder(tiny_vit, "int8")
    tower = encoder._image_tower
    assert tower is not None
    assert any("quantized" in type(m).__module__ for m in tower.modules())
    assert not any(isinstance(m, nn.MultiheadAttention) for m in tower.modules())
    original = tiny_vit.tower("image")
    assert any(isinstance(m, nn.MultiheadAttention) for m in original.modules())  # the model keeps its float tower
    np.testing.assert_array_equal(tiny_vit.embed_images(images), before)
    # tensors that are not quantised are shared, not copied
    shared = {p.data_ptr() for p in original.parameters()}
    assert any(t.data_ptr() in shared for t in tower.parameters())
    fast = encoder.embed_images(images)
    assert fast.shape == before.shape
    cos = (fast * before).sum(axis=1)
    assert cos.min() > 0.99, cos.min()
    assert np.abs(fast - before).max() > 0  # it did run the int8 path
    ref = np.argsort(-(before @ before.T), axis=1)
    got = np.argsort(-(fast @ fast.T), axis=1)
    assert (ref[:, 0] == got[:, 0]).all()  # every image is still its own nearest neighbour
    assert np.mean([len(set(ref[i, :5]) & set(got[i, :5])) for i in range(len(images))]) >= 4.0
    assert IndexEncoder(tiny_vit, "int8")._image_tower is tower  # made once per model


def test_an_int8_vector_does_not_depend_on_its_batch(tiny_vit) -> None:
    images = _images(1)
    encoder = IndexEncoder(tiny_vit, "int8")
    together = encoder.embed_images(images)
    for i in (0, 4, 9):
        np.testing.assert_array_equal(encoder.embed_images([images[i]])[0], together[i])
    np.testing.assert_array_equal(encoder.embed_images(images[::-1])[::-1], together)


def test_fp32_is_the_model_itself(starter) -> None:
    images = _images(1)
    encoder = IndexEncoder(starter, "auto")
    assert encoder.mode == "fp32" and encoder._image_tower is None
    np.testing.assert_array_equal(encoder.embed_images(images), starter.embed_images(images))


@pytest.mark.parametrize("workers", [0, 2])
def test_the_setting_picks_the_path_of_a_real_index(tmp_path: Path, tiny_vit, tiny_vit_ref, workers) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    files = [p for d in "0123456789" for p in corpus_files("image", d, 2)]
    for p in files:
        shutil.copy(p, folder / p.name)
    stored = {}
    for mode in ("fp32", "int8"):
        settings = Settings().updated(ingest={"image_tower": mode, "workers": workers, "batch_size": 7})
        with Engine.open(tmp_path / mode, create=True, model=tiny_vit_ref, settings=settings) as engine:
            engine.index([folder], progress=False)
            catalog = engine.collection.catalog
            items = {Path(uri).name: state.item_id for uri, state in catalog.file_states().items()}
            vectors = catalog.item_vectors(list(items.values()))
            by_name = {name: vectors[item] for name, item in items.items()}
        stored[mode] = np.stack([by_name[p.name] for p in files])
    images = [Image.open(p).convert("RGB") for p in files]
    np.testing.assert_allclose(stored["fp32"], tiny_vit.embed_images(images), atol=1e-5)
    # the same vectors as one image at a time in this process: workers and batches change nothing
    np.testing.assert_allclose(stored["int8"], IndexEncoder(tiny_vit, "int8").embed_images(images), atol=1e-6)
    assert (stored["int8"] * stored["fp32"]).sum(axis=1).min() > 0.99
    assert np.abs(stored["int8"] - stored["fp32"]).max() > 0
