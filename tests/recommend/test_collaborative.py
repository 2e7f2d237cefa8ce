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
    assert new_item.final[0] == pytest.approx(10 / 15 * new_item.content[0])  # at the user's share 10 / (10 + 5)


def test_popularity_gives_way_to_the_users_taste_as_history_grows():
    """Item 0 is the closest to the user's taste, item 1 what most people liked: a user with
    one liked item gets item 1 first, one with fifty item 0."""
    mods = np.array(["image"] * 4)
    cos, counts, cf = np.array([0.9, 0.2, 0.5, 0.4]), np.array([1, 30, 2, 2]), np.full(4, np.nan)
    few = blend_scores("hybrid", cos, mods, cf, counts, 1, 5.0, 3.0)
    many = blend_scores("hybrid", cos, mods, cf, counts, 50, 5.0, 3.0)
    assert few.final.argmax() == 1 and many.final.argmax() == 0
    share = 1 / 6
    assert few.final == pytest.approx(share * few.content + (1 - share) * few.popularity)


def test_co_likes_take_their_share_of_the_collaborative_part():
    mods = np.array(["image"] * 3)
    cos, counts, cf = np.array([0.5, 0.5, 0.5]), np.array([4, 4, 4]), np.array([1.0, 2.0, 3.0])
    co = np.array([1.0, 0.0, 0.0])
    als = blend_scores("hybrid", cos, mods, cf, counts, 20, 5.0, 3.0)
    mixed = blend_scores("hybrid", cos, mods, cf, counts, 20, 5.0, 3.0, co, 0.5)
    assert mixed.collaborative == pytest.approx(0.5 * als.collaborative + 0.5 * co)
    assert als.final.argmax() == 2 and mixed.final.argmax() == 0
