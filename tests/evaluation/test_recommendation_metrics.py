"""Recommendation metrics against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from crossmodal.evaluation.recommendation_metrics import (
    coverage,
    f1_at,
    hits_at,
    mean_metrics,
    ndcg_at,
    precision_at,
    recall_at,
)

RANKED = [5, 3, 9, 1, 7]
RELEVANT = {3, 7, 8}


def test_precision_recall_f1_by_hand():
    # Top 2 = [5, 3]: one hit.  Top 5: hits 3 and 7.
    assert hits_at(RANKED, RELEVANT, 2) == 1
    assert precision_at(RANKED, RELEVANT, 2) == pytest.approx(0.5)
    assert recall_at(RANKED, RELEVANT, 2) == pytest.approx(1 / 3)
    assert f1_at(RANKED, RELEVANT, 2) == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))  # 0.4
    assert f1_at(RANKED, RELEVANT, 2) == pytest.approx(0.4)
    assert precision_at(RANKED, RELEVANT, 5) == pytest.approx(0.4)
    assert recall_at(RANKED, RELEVANT, 5) == pytest.approx(2 / 3)
    assert f1_at(RANKED, RELEVANT, 5) == pytest.approx(0.5)


def test_short_list_is_not_rewarded_for_being_short():
    # Only 5 items listed, k = 10: precision divides by k.
    assert precision_at(RANKED, RELEVANT, 10) == pytest.approx(0.2)


def test_no_hits_and_nothing_held_out():
    assert f1_at([1, 2], {9}, 2) == 0.0
    assert recall_at([1, 2], set(), 2) == 0.0
    assert ndcg_at([1, 2], set(), 2) == 0.0


def test_ndcg_by_hand():
    # Hits at ranks 2 and 5: DCG = 1/log2(3) + 1/log2(6); ideal (3 relevant, k=5) = 1 + 1/log2(3) + 1/2.
    dcg = 1 / math.log2(3) + 1 / math.log2(6)
    ideal = 1 + 1 / math.log2(3) + 0.5
    assert ndcg_at(RANKED, RELEVANT, 5) == pytest.approx(dcg / ideal)
    assert ndcg_at(RANKED, RELEVANT, 5) == pytest.approx(0.4776, abs=1e-4)
    # k = 2, one hit at rank 2; the ideal list of 2 has both slots relevant.
    assert ndcg_at(RANKED, RELEVANT, 2) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert ndcg_at([3, 7, 8], RELEVANT, 3) == pytest.approx(1.0)
    # A repeated relevant item is counted once.
    assert ndcg_at([3, 3], {3}, 2) == pytest.approx(1.0)


def test_coverage_by_hand():
    assert coverage([[1, 2, 3], [3, 4]], 10) == pytest.approx(0.4)
    assert coverage([[1, 2, 3], [3, 4]], 10, k=1) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        coverage([[1]], 0)


def test_mean_metrics_average_over_users():
    out = mean_metrics([[1, 2], [3, 4]], [{1}, {9}], k=2, catalogue_size=8)
    # User 1: P = 0.5, R = 1, F1 = 2/3, nDCG = 1. User 2: all 0.
    assert out["precision"] == pytest.approx(0.25)
    assert out["recall"] == pytest.approx(0.5)
    assert out["f1"] == pytest.approx(1 / 3)
    assert out["ndcg"] == pytest.approx(0.5)
    assert out["coverage"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        mean_metrics([[1]], [], k=1, catalogue_size=1)
    with pytest.raises(ValueError):
        precision_at([1], {1}, 0)
