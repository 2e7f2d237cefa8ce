"""Ranking metrics: hand-computed recall@k and AP on tiny examples, and a randomised cross-check
against a brute-force per-query implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from crossmodal.evaluation.metrics import (
    ALL_DIRECTIONS,
    CROSS_MODAL_DIRECTIONS,
    KS,
    all_directions,
    direction_name,
    mean_cross_modal_map,
    ranking_metrics,
)


def _unit(angles: list[float]) -> np.ndarray:
    """Unit vectors in the plane: cosine similarity falls as the angle difference grows."""
    a = np.asarray(angles, dtype=np.float64)
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def test_direction_names():
    assert direction_name("text", "image") == "text->image"
    assert CROSS_MODAL_DIRECTIONS == ["text->image", "text->audio", "image->text", "image->audio",
                                      "audio->text", "audio->image"]
    assert ALL_DIRECTIONS == CROSS_MODAL_DIRECTIONS + ["text->text", "image->image", "audio->audio"]
    assert KS == (1, 5, 10)


def test_relevant_at_ranks_1_and_3_of_4():
    query = _unit([0.0])
    # gallery rows deliberately out of rank order: ranks are 3, 1, 4, 2
    gallery = _unit([0.2, 0.0, 0.3, 0.1])
    labels = np.array(["cat", "cat", "dog", "dog"])
    m = ranking_metrics(query, np.array(["cat"]), gallery, labels, ks=(1, 2, 3))
    assert m["mAP"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["recall@1"] == 1.0
    assert m["recall@2"] == 1.0
    assert m["recall@3"] == 1.0
    assert m["queries"] == 1
    assert m["gallery"] == 4


def test_relevant_at_ranks_2_and_4_of_4():
    query = _unit([0.0])
    gallery = _unit([0.0, 0.1, 0.2, 0.3])
    labels = np.array([0, 1, 0, 1])
    m = ranking_metrics(query, np.array([1]), gallery, labels, ks=(1, 2, 4))
    assert m["mAP"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert m["recall@1"] == 0.0
    assert m["recall@2"] == 1.0
    assert m["recall@4"] == 1.0


def test_several_queries_average():
    gallery = _unit([0.0, 0.5, 1.0])
    g_labels = np.array([0, 1, 2])
    # query 0 is nearest gallery 0 (label 2 wanted -> rank 3); query 1 nearest gallery 2 (label 2 -> rank 1)
    queries = _unit([0.0, 1.0])
    m = ranking_metrics(queries, np.array([2, 2]), gallery, g_labels, ks=(1, 2))
    assert m["mAP"] == pytest.approx((1 / 3 + 1) / 2)
    assert m["recall@1"] == 0.5
    assert m["recall@2"] == 0.5
    assert m["queries"] == 2


def test_queries_without_relevant_items_are_not_counted():
    gallery = _unit([0.0, 0.1])
    queries = _unit([0.0, 0.05, 3.0])
    m = ranking_metrics(queries, np.array([7, 1, 9]), gallery, np.array([1, 2]), ks=(1,))
    # only the second query has a relevant item (gallery 0 at rank 1)
    assert m["queries"] == 1
    assert m["recall@1"] == 1.0
    assert m["mAP"] == 1.0


def test_no_query_with_relevant_items_gives_nan():
    m = ranking_metrics(_unit([0.0]), np.array([5]), _unit([0.0, 1.0]), np.array([1, 2]), ks=(1, 5))
    assert m["queries"] == 0
    assert m["gallery"] == 2
    assert math.isnan(m["mAP"]) and math.isnan(m["recall@1"]) and math.isnan(m["recall@5"])


@pytest.mark.parametrize("chunk", [1, 3, 512])
def test_same_set_leaves_the_query_out(chunk):
    x = _unit([0.0, 0.1, 0.3, 1.0])
    labels = np.array([0, 1, 0, 1])
    # item 0: ranking 1, 2, 3 -> relevant (2) at rank 2 -> AP 1/2
    # item 1: ranking 0, 2, 3 -> relevant (3) at rank 3 -> AP 1/3
    # item 2: ranking 1, 0, 3 -> relevant (0) at rank 2 -> AP 1/2
    # item 3: ranking 2, 1, 0 -> relevant (1) at rank 2 -> AP 1/2
    m = ranking_metrics(x, labels, x, labels, same_set=True, ks=(1, 2, 3), chunk=chunk)
    assert m["mAP"] == pytest.approx((0.5 + 1 / 3 + 0.5 + 0.5) / 4)
    assert m["recall@1"] == 0.0
    assert m["recall@2"] == 0.75
    assert m["recall@3"] == 1.0
    assert m["queries"] == 4
    assert m["gallery"] == 3
    # without exclusion every query finds itself first
    m_self = ranking_metrics(x, labels, x, labels, same_set=False, ks=(1,), chunk=chunk)
    assert m_self["recall@1"] == 1.0
    assert m_self["gallery"] == 4


def test_same_set_singleton_labels_are_skipped():
    x = _unit([0.0, 0.1, 0.2])
    labels = np.array([0, 0, 1])
    m = ranking_metrics(x, labels, x, labels, same_set=True, ks=(1,))
    # item 2 is alone in its class: only items 0 and 1 count, and each finds the other first
    assert m["queries"] == 2
    assert m["recall@1"] == 1.0
    assert m["mAP"] == 1.0


def test_ranking_ignores_self_even_when_another_item_is_identical():
    x = _unit([0.0, 0.0, 2.0])
    labels = np.array([0, 1, 1])
    m = ranking_metrics(x, labels, x, labels, same_set=True, ks=(1,))
    # item 1's only relevant neighbour (item 2) ranks behind item 0, which is identical to it;
    # item 2 ties between items 0 and 1 and the tie goes to the lower gallery index (stable sort)
    assert m["queries"] == 2
    assert m["recall@1"] == 0.0
    assert m["mAP"] == pytest.approx(0.5)


def _brute_force(queries, q_labels, gallery, g_labels, same_set, ks):
    hits = dict.fromkeys(ks, 0)
    ap_sum, counted = 0.0, 0
    for i in range(len(queries)):
        candidates = [j for j in range(len(gallery)) if not (same_set and j == i)]
        sims = {j: float(sum(float(a) * float(b) for a, b in zip(queries[i], gallery[j]))) for j in candidates}
        ranking = sorted(candidates, key=lambda j: (-sims[j], j))
        relevant = [g_labels[j] == q_labels[i] for j in ranking]
        if not any(relevant):
            continue
        counted += 1
        for k in ks:
            hits[k] += any(relevant[:k])
        found, precisions = 0, []
        for rank, rel in enumerate(relevant, start=1):
            if rel:
                found += 1
                precisions.append(found / rank)
        ap_sum += sum(precisions) / len(precisions)
    if counted == 0:
        return None
    out = {f"recall@{k}": hits[k] / counted for k in ks}
    out["mAP"] = ap_sum / counted
    out["queries"] = counted
    out["gallery"] = len(gallery) - (1 if same_set else 0)
    return out


def _normalised(rng, n, d):
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_matches_brute_force_cross_set(seed, chunk):
    rng = np.random.default_rng(seed)
    queries, gallery = _normalised(rng, 23, 6), _normalised(rng, 31, 6)
    q_labels = rng.integers(0, 7, 23)  # labels 5 and 6 never occur in the gallery
    g_labels = rng.integers(0, 5, 31)
    ks = (1, 3, 5, 10)
    got = ranking_metrics(queries, q_labels, gallery, g_labels, ks=ks, chunk=chunk)
    want = _brute_force(queries, q_labels, gallery, g_labels, False, ks)
    assert want is not None and want["queries"] < 23
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_matches_brute_force_same_set(seed, chunk):
    rng = np.random.default_rng(100 + seed)
    x = _normalised(rng, 27, 5)
    labels = rng.integers(0, 9, 27)
    ks = (1, 2, 5)
    got = ranking_metrics(x, labels, x, labels, same_set=True, ks=ks, chunk=chunk)
    want = _brute_force(x, labels, x, labels, True, ks)
    assert want is not None
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_string_labels_and_float32_inputs():
    rng = np.random.default_rng(3)
    x = _normalised(rng, 12, 4).astype(np.float32)
    labels = np.array([f"class-{i % 3}" for i in range(12)])
    got = ranking_metrics(x, labels, x, labels, same_set=True, ks=(1, 5), chunk=5)
    want = _brute_force(x.astype(np.float64), labels, x.astype(np.float64), labels, True, (1, 5))
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key


def test_all_directions_skips_missing_and_empty_modalities():
    rng = np.random.default_rng(0)
    embeddings = {"text": _normalised(rng, 6, 3), "image": _normalised(rng, 8, 3), "audio": np.zeros((0, 3))}
    labels = {"text": np.arange(6) % 3, "image": np.arange(8) % 3, "audio": np.zeros(0, dtype=int)}
    result = all_directions(embeddings, labels)
    assert list(result) == ["text->image", "image->text", "text->text", "image->image"]
    assert result["text->image"] == ranking_metrics(embeddings["text"], labels["text"],
                                                    embeddings["image"], labels["image"])
    assert result["image->image"] == ranking_metrics(embeddings["image"], labels["image"],
                                                     embeddings["image"], labels["image"], same_set=True)
    assert result["image->image"]["gallery"] == 7
    assert result["text->image"]["gallery"] == 8

    del embeddings["audio"], labels["audio"]
    assert list(all_directions(embeddings, labels)) == ["text->image", "image->text", "text->text", "image->image"]


def test_all_directions_with_explicit_list():
    rng = np.random.default_rng(1)
    embeddings = {m: _normalised(rng, 5, 3) for m in ("text", "image", "audio")}
    labels = {m: np.arange(5) % 2 for m in embeddings}
    result = all_directions(embeddings, labels, ["audio->text", "image->audio"])
    assert list(result) == ["audio->text", "image->audio"]
    assert len(all_directions(embeddings, labels)) == 9


def test_mean_cross_modal_map():
    metrics = {
        "text->image": {"mAP": 0.5},
        "image->text": {"mAP": 0.7},
        "audio->text": {"mAP": float("nan")},
        "text->text": {"mAP": 0.0},  # intra-modal: not part of the score
    }
    assert mean_cross_modal_map(metrics) == pytest.approx(0.6)
    assert math.isnan(mean_cross_modal_map({"text->text": {"mAP": 0.9}}))
    assert math.isnan(mean_cross_modal_map({}))
