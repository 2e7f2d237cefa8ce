"""Item vectors by fusion (issue 21, point 1): an image indexed with its caption is one item with
an image, a text and a fused vector (`[index] fusion_weights`); recommendation and "more like
this" compare items by that fused vector (`Catalog.item_vectors`)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from support.media import corpus_files, index_paths

from crossmodal.core import Engine
from crossmodal.settings import Settings

DEFAULT_WEIGHTS = {"image": 0.8, "audio": 0.8, "text": 0.2}
WEIGHTS = {"picture": {"image": 1.0, "text": 0.05}, "caption": {"image": 0.05, "text": 1.0}}


@pytest.fixture(scope="module")
def collections(tmp_path_factory, starter):
    """The same files indexed twice, once with the picture weighted and once with the caption."""
    root = tmp_path_factory.mktemp("fusion")
    media = root / "media"
    media.mkdir()
    shutil.copy(corpus_files("image", "3", 1)[0], media / "three.png")
    (media / "three.txt").write_text("someone saying seven\n")  # a caption that disagrees with the picture
    for label in "37":
        for path in corpus_files("image", label, 4)[1:] + corpus_files("audio", label, 3):
            shutil.copy(path, media / path.name)
    for name, weights in WEIGHTS.items():
        index_paths(root / name, [media], Settings().updated(index={"fusion_weights": weights}), progress=False,
                    aligner=starter)
    return root


def captioned(engine: Engine) -> int:
    [item] = [i for i, f in engine.collection.catalog.filter_fields().items() if f["uri"].endswith("three.png")]
    assert sorted(engine.item(item)["modalities"]) == ["image", "text"]
    return item


def test_the_item_vector_is_the_fused_one(collections):
    with Engine.open(collections / "picture") as engine:
        catalog, item = engine.collection.catalog, captioned(engine)
        ids = catalog.vectors_of_items([item])
        by_kind = {catalog.describe(ids)[v].kind: vec for v, vec in catalog.vectors_by_id(ids).items()}
        assert set(by_kind) == {"image", "text", "fused"}
        np.testing.assert_allclose(catalog.item_vectors([item])[item], by_kind["fused"], atol=1e-6)
        assert float(by_kind["fused"] @ by_kind["image"]) > float(by_kind["fused"] @ by_kind["text"])


@pytest.mark.parametrize("name", sorted(WEIGHTS))
def test_the_fused_vector_is_the_documented_weighted_sum(collections, name):
    """fused = normalise(w_image * image + w_text * text), with the weights of `[index] fusion_weights`."""
    with Engine.open(collections / name) as engine:
        catalog, item = engine.collection.catalog, captioned(engine)
        ids = catalog.vectors_of_items([item])
        by_kind = {catalog.describe(ids)[v].kind: vec for v, vec in catalog.vectors_by_id(ids).items()}
    weights = WEIGHTS[name]
    expected = weights["image"] * by_kind["image"] + weights["text"] * by_kind["text"]
    np.testing.assert_allclose(by_kind["fused"], expected / np.linalg.norm(expected), atol=1e-6)


def test_the_default_weights_are_the_measured_ones():
    """docs/recommendation.md ("Measured fusion weights", scripts/measure_fusion.py) sets these."""
    assert Settings().index.fusion_weights == DEFAULT_WEIGHTS


def test_more_like_this_and_recommendation_follow_the_fusion_weights(collections):
    def audio_like_the_captioned_picture(name: str) -> tuple[list[str], list[str]]:
        with Engine.open(collections / name) as engine:
            item = captioned(engine)
            similar = [r.uri for r in engine.similar(item, k=3, targets="audio").results]
            engine.feedback("ana", item, "like")
            recommended = [r.uri for r in engine.recommend("ana", k=3, targets="audio", method="content").results]
            return similar, recommended

    for name, digit in (("picture", "3"), ("caption", "7")):
        similar, recommended = audio_like_the_captioned_picture(name)
        assert all(uri.rsplit("/", 1)[-1].startswith(f"{digit}_") for uri in similar), (name, similar)
        assert all(uri.rsplit("/", 1)[-1].startswith(f"{digit}_") for uri in recommended), (name, recommended)
