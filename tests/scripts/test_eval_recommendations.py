"""The recommendation evaluation: a simulated population and K-fold run on the demo collection
(a handful of users, 2 folds), checked for structure and value ranges, not for who wins."""

from __future__ import annotations

import shutil

import pytest
from eval_recommendations import METHODS, catalogue, evaluate, simulate, split_folds

from crossmodal.core import Engine


def test_simulated_users_draw_distinct_feedback(demo_collection):
    with Engine.open(demo_collection) as engine:
        items = catalogue(engine)
    assert len(items) == 830 and {i.label for i in items} == {str(d) for d in range(10)}
    users = simulate(items, 8, seed=3, min_likes=4)
    ids = {i.id for i in items}
    for u in users:
        assert len(u.likes) >= 4
        assert not set(u.likes) & set(u.clicks) and not set(u.dislikes) & (set(u.likes) | set(u.clicks))
        assert set(u.likes) | set(u.clicks) | set(u.dislikes) <= ids
        assert sum(u.taste.values()) == pytest.approx(1.0)
    folds = split_folds(users, 4, seed=3)
    for u in users:
        assert sorted(i for part in folds[u.name] for i in part) == sorted(u.likes)
        assert all(folds[u.name])
    assert simulate(items, 8, seed=3, min_likes=4)[0].likes == users[0].likes  # seeded


@pytest.mark.slow
def test_cross_validation_structure_and_ranges(demo_collection, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(demo_collection, folder)
    with Engine.open(folder) as engine:
        users = simulate(catalogue(engine), 6, seed=0, min_likes=2)
        result = evaluate(engine, users, folds=2, seed=0)
    assert set(result["methods"]) == set(METHODS)
    for table in result["methods"].values():
        assert set(table) == {"precision", "recall", "f1", "ndcg", "coverage"}
        for summary in table.values():
            assert len(summary["folds"]) == 2
            assert 0.0 <= summary["mean"] <= 1.0 and summary["std"] >= 0.0
    for curve in result["precision_recall"].values():
        assert len(curve["precision"]) == len(curve["recall"]) == 20
        assert all(0.0 <= v <= 1.0 for v in curve["precision"] + curve["recall"])
        assert curve["recall"] == sorted(curve["recall"])  # recall@k cannot fall as k grows
    assert set(result["hybrid_vs"]) == {"popular", "content", "collaborative"}
    for kind in ("plain_precision", "personalised_precision"):
        assert 0.0 <= result["search"][kind]["mean"] <= 1.0
