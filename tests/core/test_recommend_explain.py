"""Explanations and the related-items graph in `Engine.recommend`, on the demo corpus indexed with
the starter model and real feedback in its SQLite: each reason names a liked item by id and
file, and the graph fills the list a collaborative (or popular) ranking could not."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import defaultdict

import pytest

from crossmodal.core import Engine
from crossmodal.settings import Settings


@pytest.fixture()
def folder(demo_collection, tmp_path):
    return shutil.copytree(demo_collection, tmp_path / "coll")


def engine_for(folder, **recommend) -> Engine:
    return Engine.open(folder, settings=Settings().updated(recommend={"mmr_lambda": 1.0, **recommend}))


def catalog(engine: Engine) -> tuple[dict[int, dict], dict[tuple, list[int]]]:
    """Filter fields per item, and item ids by (modality, label, speaker)."""
    fields = engine.collection.catalog.filter_fields()
    by: dict[tuple, list[int]] = defaultdict(list)
    for item, f in sorted(fields.items()):
        by[(f["modality"], f["meta"].get("label"), f["meta"].get("speaker"))].append(item)
    return fields, by


def texts(result) -> list[str]:
    return [reason["text"] for reason in result.explanation]


def test_the_graph_widens_a_thin_collaborative_list_and_says_why(folder):
    """ana liked one clip of george saying 4; bob liked it and a text about 9. The collaborative
    model knows two items, so without the graph the rest of ana's list is whatever comes first
    by id; with it, george's other 4s (same speaker and label), then his other clips."""
    with engine_for(folder) as engine:
        _, by = catalog(engine)
        x, *george4 = by[("audio", "4", "george")]
        nine = by[("text", "9", None)][0]
        engine.feedback("ana", x, "like")
        engine.feedback("bob", x, "like")
        engine.feedback("bob", nine, "like")
        response = engine.recommend("ana", k=6, method="collaborative", explain=True)
        assert response.used == "collaborative" and response.widened == 5
        first, *rest = response.results
        assert first.id == nine and first.sources["graph"] is None
        assert texts(first) == [f"1 person who liked #{x} 4_george_0.wav also liked this"]
        assert first.explanation[0]["item"] == x and first.explanation[0]["users"] == 1
        assert [r.id for r in rest[:4]] == george4
        for r in rest[:4]:
            assert texts(r) == [f"same speaker george as #{x} 4_george_0.wav", f"same label 4 as #{x} 4_george_0.wav"]
            assert 0 < r.score < first.score and r.sources["graph"] == rest[0].sources["graph"] > 0
        assert rest[4].uri.endswith("_george_0.wav")
        assert texts(rest[4]) == [f"same speaker george as #{x} 4_george_0.wav"]
    with engine_for(folder, graph=False) as engine:
        plain = engine.recommend("ana", k=6, method="collaborative", explain=True)
        assert plain.widened == 0 and plain.results[0].id == nine
        assert not {r.id for r in plain.results[1:]} & set(george4)  # the tail is id order, unrelated
        assert all(r.sources["graph"] is None for r in plain.results)


def test_hybrid_reasons_name_the_nearest_liked_item_and_the_people_who_liked_it(folder):
    with engine_for(folder) as engine:
        fields, by = catalog(engine)
        threes = by[("image", "3", None)]
        liked, popular_three = threes[:3], threes[3]
        for item in liked:
            engine.feedback("ana", item, "like")
        for user in ("u1", "u2"):
            engine.feedback(user, liked[0], "like")
            engine.feedback(user, popular_three, "like")
        response = engine.recommend("ana", k=10, targets="image", explain=True)
        assert response.used == "hybrid"
        ids, matrix, _ = engine.recommender._items()
        vector = {int(i): matrix[n] for n, i in enumerate(ids)}
        for r in response.results:
            because = r.explanation[0]
            nearest = max(liked, key=lambda h: float(vector[h] @ vector[r.id]))
            assert because["kind"] == "liked" and because["item"] == nearest
            assert because["text"] == f"because you liked #{nearest} " + fields[nearest]["uri"].rsplit("/", 1)[-1]
            if r.label == "3":
                assert f"same label 3 as #{liked[-1]} {fields[liked[-1]]['uri'].rsplit('/', 1)[-1]}" in texts(r)
        collaborative = engine.recommend("ana", k=1, method="collaborative", explain=True).results[0]
        name = fields[liked[0]]["uri"].rsplit("/", 1)[-1]
        assert collaborative.id == popular_three
        assert texts(collaborative)[0] == f"2 people who liked #{liked[0]} {name} also liked this"


def test_segments_of_one_file_explain_and_widen_a_popular_list(folder, starter, tmp_path):
    chapter = tmp_path / "chapter.jsonl"
    lines = ["A clock strikes seven at dusk.", "Seven swans swim across the lake.", "The seventh day is for rest."]
    chapter.write_text("".join(json.dumps({"modality": "text", "text": t}) + "\n" for t in lines))
    with Engine.open(folder, settings=Settings(), aligner=starter) as engine:
        engine.index([chapter], progress=False)
    with engine_for(folder) as engine:
        fields = engine.collection.catalog.filter_fields()
        ours = sorted(i for i, f in fields.items() if f["uri"].split("#")[0].endswith("chapter.jsonl"))
        assert len(ours) == 3
        engine.feedback("ana", ours[0], "like")
        response = engine.recommend("ana", k=4, method="popular", explain=True)
        assert response.used == "popular" and response.widened == 2
        assert [r.id for r in response.results[:2]] == ours[1:]
        for r in response.results[:2]:
            assert texts(r) == [f'part of the same file chapter.jsonl as #{ours[0]} "{lines[0]}"']
            assert r.explanation[0]["item"] == ours[0] and r.explanation[0]["file"] == "chapter.jsonl"


def test_a_cold_start_list_says_how_many_people_liked_each_item_and_the_cli_prints_reasons(folder):
    with engine_for(folder) as engine:
        _, by = catalog(engine)
        favourite = by[("text", "8", None)][0]
        for user in ("u1", "u2", "u3"):
            engine.feedback(user, favourite, "like")
        first = engine.recommend("newcomer", k=3, explain=True).results[0]
        assert first.id == favourite and texts(first) == ["popular: liked by 3 people"]
    out = subprocess.run([sys.executable, "-m", "crossmodal", "recommend", "--collection", str(folder), "--user",
                          "u1", "-k", "3", "--method", "content", "--explain"], capture_output=True, text=True,
                         check=True).stdout
    assert f"- because you liked #{favourite} \"" in out, out


def test_the_graph_is_kept_while_catalog_and_feedback_stay_and_rebuilt_when_either_changes(folder, starter, tmp_path):
    with engine_for(folder) as engine:
        _, by = catalog(engine)
        a, b = by[("image", "5", None)][:2]
        engine.feedback("u1", a, "like")
        first = engine.recommender.graph()
        assert engine.recommender.graph() is first and first.links(a, b)[0].kind == "meta"
        engine.feedback("u1", b, "like")
        second = engine.recommender.graph()
        assert second is not first and [link.kind for link in second.links(a, b)] == ["co_liked", "meta"]
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"modality": "text", "text": "Five fingers on one hand.", "label": "5"}) + "\n")
    with Engine.open(folder, settings=Settings(), aligner=starter) as engine:
        before = engine.recommender.graph()
        engine.index([extra], progress=False)  # a new catalog generation, the same feedback
        after = engine.recommender.graph()
        fields = engine.collection.catalog.filter_fields()
        (new,) = [i for i, f in fields.items() if f["uri"].split("#")[0].endswith("extra.jsonl")]
        assert after is not before and not before.links(a, new)
        assert [link.value for link in after.links(a, new)] == ["5"] and engine.recommender.graph() is after
    with engine_for(folder, graph=False) as engine:
        assert engine.recommender.graph() is None
