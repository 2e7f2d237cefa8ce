"""The collaborative model (implicit ALS) fitted on small real interaction sets, its storage,
and the hybrid blend's rules, without a collection."""

from __future__ import annotations

import numpy as np
import pytest

from crossmodal.errors import StorageError
from crossmodal.recommend.collaborative import MODEL_FILE, ALSParams, CollaborativeModel, fit_als
from crossmodal.recommend.hybrid import blend_scores, cf_weight, grouped_z
from crossmodal.recommend.interactions import Interactions

WEIGHTS = {"like": 1.0, "dislike": -1.0, "click": 0.25}


def two_tastes() -> list[tuple[str, int, str]]:
    """Users a0..a5 like three of items 1-5 each, users b0..b5 three of items 11-15 each."""
    events = []
    for group, base in (("a", 1), ("b", 11)):
        for u in range(6):
            for j in range(3):
                events.append((f"{group}{u}", base + (u + j) % 5, "like"))
    return events


def test_als_ranks_the_users_own_taste_first():
    model = fit_als(Interactions.from_events(two_tastes(), WEIGHTS))
    items = np.array([*range(1, 6), *range(11, 16)], dtype=np.int64)
    for user in ("a0", "a3", "b1", "b5"):
        scores = model.scores(user, items)
        own = scores[:5] if user.startswith("a") else scores[5:]
        other = scores[5:] if user.startswith("a") else scores[:5]
        assert own.min() > other.max(), user
    assert model.scores("nobody", items) is None
    assert np.isnan(model.scores("a0", np.array([99], dtype=np.int64))).all()  # an item no one reacted to


def test_a_dislike_is_a_confident_zero_and_clicks_count_weakly():
    events = [*two_tastes(), ("a0", 4, "dislike"), ("a0", 4, "dislike"), ("a0", 11, "click")]
    data = Interactions.from_events(events, WEIGHTS)
    pair = dict(zip(zip(data.rows, data.cols), data.values))
    a0, col4, col11 = data.users.index("a0"), int(np.searchsorted(data.items, 4)), int(np.searchsorted(data.items, 11))
    assert pair[(a0, col11)] == pytest.approx(0.25)
    assert pair.get((a0, col4), -2.0) < 0  # like (if any) outweighed by two dislikes
    model = fit_als(data)
    before = fit_als(Interactions.from_events(two_tastes(), WEIGHTS))
    item = np.array([4], dtype=np.int64)
    assert model.scores("a0", item)[0] < before.scores("a0", item)[0]


def test_a_deleted_users_rows_change_the_fingerprint_and_leave_the_model():
    events = two_tastes()
    full = Interactions.from_events(events, WEIGHTS)
    without = Interactions.from_events([e for e in events if e[0] != "b2"], WEIGHTS)
    assert full.fingerprint() != without.fingerprint()
    assert full.fingerprint() == Interactions.from_events(list(reversed(events)), WEIGHTS).fingerprint()
    assert "b2" not in fit_als(without).users


def test_the_model_is_stored_as_npz_and_read_back(tmp_path):
    model = fit_als(Interactions.from_events(two_tastes(), WEIGHTS), ALSParams(factors=4, iterations=3))
    model.save(tmp_path)
    back = CollaborativeModel.load(tmp_path)
    assert back.users == model.users and back.fingerprint == model.fingerprint and back.params == model.params
    np.testing.assert_array_equal(back.user_factors, model.user_factors)
    np.testing.assert_array_equal(back.items, model.items)
    assert [p.name for p in tmp_path.iterdir()] == [MODEL_FILE]  # no temporary file left
    assert CollaborativeModel.load(tmp_path / "absent") is None
    (tmp_path / MODEL_FILE).write_bytes(b"not a zip")
    with pytest.raises(StorageError, match="collaborative model"):
        CollaborativeModel.load(tmp_path)


def test_the_blend_leans_on_history():
    assert cf_weight(0, np.array([10]), 5.0, 3.0)[0] == 0.0
    low, high = cf_weight(2, np.array([1, 20]), 5.0, 3.0)
    assert 0 < low < high < cf_weight(50, np.array([20]), 5.0, 3.0)[0] < 1
    z = grouped_z(np.array([0.9, 0.8, 0.1, 0.2, np.nan]), np.array(["text", "text", "image", "image", "image"]))
    assert z[0] == pytest.approx(-z[1]) and z[3] == pytest.approx(-z[2]) and np.isnan(z[4])
    mods = np.array(["image"] * 3)
    cold = blend_scores("hybrid", None, mods, None, np.array([3, 0, 1]), 0, 5.0, 3.0)
    assert cold.used == "popular" and cold.final.argmax() == 0
    new_item = blend_scores("hybrid", np.array([0.9, 0.1, 0.5]), mods, np.array([np.nan, 5.0, 1.0]),
                            np.array([0, 9, 9]), 10, 5.0, 3.0)
    assert new_item.used == "hybrid" and new_item.cf_weight[0] == 0.0  # a new item: content only
    assert new_item.final[0] == pytest.approx(new_item.content[0])
