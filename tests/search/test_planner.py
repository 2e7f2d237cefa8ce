"""The query planner, fusion, filters and personalised rerank on the demo corpus, through the
`Engine` (real starter model, SQLite and FAISS)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from support.media import allowed_item_ids, brute_force_top, corpus_files, index_paths

from crossmodal.cli import EXIT_OK, main
from crossmodal.core.engine import Engine
from crossmodal.search.calibration import squash
from crossmodal.search.query import Filters, Query, QueryError, QueryPart
from crossmodal.settings import SearchSettings, Settings


def neutral_part(engine: Engine) -> QueryPart:
    """A query equally close to every class: the mean of the collection's vectors. (Any text
    query in the digits world leans towards some digit.)"""
    _, vectors = engine.collection.catalog.vectors(["image", "audio", "text"])
    return QueryPart("image", vector=vectors.mean(axis=0))


@pytest.fixture(scope="module")
def demo(demo_collection):
    return demo_collection


@pytest.fixture()
def engine(demo, starter):
    with Engine.open(demo, aligner=starter) as eng:
        yield eng
        for user in ("ana", "bob", "cy"):
            eng.delete_user(user)


def _labels(results) -> list[str]:
    return [r.label for r in results]


def _query(*parts: QueryPart, **kw) -> Query:
    return Query(tuple(parts), **kw)


def test_likes_raise_a_class_for_that_user_only(engine):
    NEUTRAL = neutral_part(engine)
    query = dict(targets=("image",), k=10)
    before = engine.search(_query(NEUTRAL, user="ana", **query)).results
    bob_before = engine.search(_query(NEUTRAL, user="bob", **query)).results
    target = next(lab for lab in "0123456789" if _labels(before).count(lab) <= 1)
    liked = [r.id for r in engine.search(_query(QueryPart("text", text=f"the digit {target}"),
                                                targets=("image",), k=5)).results]
    for item in liked:
        engine.feedback("ana", item, "like")
    after = engine.search(_query(NEUTRAL, user="ana", **query))
    assert _labels(after.results).count(target) >= 6, (target, _labels(before), _labels(after.results))
    assert after.plan.user_events == 5 and after.plan.beta > 0
    bob_after = engine.search(_query(NEUTRAL, user="bob", **query)).results
    assert [r.id for r in bob_after] == [r.id for r in bob_before]


def test_dislikes_push_a_class_down(engine):
    NEUTRAL = neutral_part(engine)
    query = dict(targets=("image",), k=10)
    before = _labels(engine.search(_query(NEUTRAL, user="bob", **query)).results)
    top = max(set(before), key=before.count)
    disliked = [r.id for r in engine.search(_query(QueryPart("text", text=f"the digit {top}"),
                                                   targets=("image",), k=5)).results]
    for item in disliked:
        engine.feedback("bob", item, "dislike")
    after = _labels(engine.search(_query(NEUTRAL, user="bob", **query)).results)
    assert after.count(top) < before.count(top), (top, before, after)


def test_deleting_history_restores_neutral_results(engine):
    query = _query(neutral_part(engine), user="cy", targets=("image", "audio"), k=10)
    neutral = [(r.id, r.score) for r in engine.search(query).results]
    for r in engine.search(_query(QueryPart("text", text="nine"), targets=("audio",), k=4)).results:
        engine.feedback("cy", r.id, "like")
    assert [(r.id, r.score) for r in engine.search(query).results] != neutral
    history = engine.export_user("cy")
    assert [e["event"] for e in history["events"]] == ["like"] * 4
    assert engine.delete_user("cy") == 4
    assert [(r.id, r.score) for r in engine.search(query).results] == neutral
    assert engine.export_user("cy")["events"] == []


def test_text_plus_image_ranks_items_matching_both_first(tmp_path, starter):
    folder = tmp_path / "media"
    folder.mkdir()
    three = corpus_files("image", "3", 3)
    shutil.copy(three[0], folder / "both.png")
    (folder / "both.txt").write_text("the number seven")
    shutil.copy(three[1], folder / "image_only.png")
    shutil.copy(corpus_files("image", "7", 1)[0], folder / "text_only.png")
    (folder / "seven.txt").write_text("seven")
    index_paths(tmp_path / "c", [folder], Settings(), progress=False, aligner=starter)
    parts = (QueryPart("image", path=three[2]), QueryPart("text", text="seven"))
    with Engine.open(tmp_path / "c", aligner=starter) as engine:
        for fusion, merge in (("early", None), ("late", "score"), ("late", "rrf")):
            results = engine.search(Query(parts, targets=("joint",), k=4, fusion=fusion, late_merge=merge)).results
            names = [Path(r.uri).name for r in results]
            assert names[0] == "both.png", (fusion, merge, [(r.uri, r.score) for r in results])


@pytest.mark.parametrize("fusion,merge", [("early", None), ("late", "score"), ("late", "rrf")])
def test_every_fusion_finds_the_class_both_parts_agree_on(engine, fusion, merge):
    parts = (QueryPart("image", path=corpus_files("image", "4", 6)[5]), QueryPart("text", text="four", weight=0.5))
    response = engine.explain(_query(*parts, targets=("image", "audio"), k=10, fusion=fusion, late_merge=merge))
    assert _labels(response.results).count("4") >= 9
    assert response.plan.fusion == fusion and response.plan.late_merge == merge
    first = response.results[0].explanation
    assert [p["modality"] for p in first["parts"]] == ["image", "text"]
    assert [p["weight"] for p in first["parts"]] == pytest.approx([2 / 3, 1 / 3], abs=1e-3)
    if merge == "score":
        expected = sum(p["weight"] * p["cosine"] for p in first["parts"])
        assert first["cosine"] == pytest.approx(expected, abs=1e-4)
    z = [sum(p["weight"] * p["z"] for p in r.explanation["parts"]) for r in response.results]
    assert [r.relevance for r in response.results] == pytest.approx(list(squash(np.array(z))), abs=1e-5)
    if merge == "rrf":
        scores = [r.score for r in response.results]
        assert scores == sorted(scores, reverse=True)
    else:  # bands of calibrated relevance, best first; round robin across the targets inside a band
        bands = [min(np.ceil(v), 0) for v in z]
        assert bands == sorted(bands, reverse=True)


@pytest.mark.parametrize("filters", [
    Filters(meta={"label": "3"}),
    Filters(uri_glob="*/audio/*_theo_*"),
    Filters(modalities=("audio",)),
    Filters(meta={"label": "8"}, uri_glob="*/images/*"),
    Filters(after=0.0, before=1.0),
])
@pytest.mark.parametrize("selective_fraction", [0.0, 1.0])
def test_filters_never_leak_and_match_brute_force(demo, starter, filters, selective_fraction):
    settings = Settings(search=SearchSettings(selective_fraction=selective_fraction))
    with Engine.open(demo, aligner=starter, settings=settings) as engine:
        cat = engine.collection.catalog
        allowed = allowed_item_ids(cat, filters)
        part = QueryPart("text", text="someone saying seven")
        response = engine.search(_query(part, targets=("image", "audio", "text"), k=10, filters=filters))
        assert {r.id for r in response.results} <= allowed
        calibration, _ = engine.planner.calibrations.get(engine.collection)
        expected = brute_force_top(engine.collection.catalog, engine.planner.embed_part(part), allowed,
                                   ("image", "audio", "text"), 10, calibration)
        assert [r.id for r in response.results] == expected
        if allowed:
            assert ("inside" in response.plan.filter_mode) == (selective_fraction == 1.0)
        else:
            assert response.results == []


def test_segments_collapse_to_the_best_window_with_its_time(tmp_path, starter):
    import soundfile as sf

    wave, rate = sf.read(corpus_files("audio", "8", 1)[0], dtype="float32")
    other, _ = sf.read(corpus_files("audio", "2", 1)[0], dtype="float32")
    gap = np.zeros(int(2.5 * rate), dtype=np.float32)
    (tmp_path / "m").mkdir()
    sf.write(tmp_path / "m" / "long.wav", np.concatenate([other, gap, wave, gap, other]), rate)
    index_paths(tmp_path / "c", [tmp_path / "m"], Settings(), progress=False, aligner=starter)
    with Engine.open(tmp_path / "c", aligner=starter) as engine:
        results = engine.search(_query(QueryPart("text", text="eight"), targets=("audio",), k=5)).results
    assert len(results) == 1
    start_of_eight = (len(other) + len(gap)) / rate
    assert results[0].start <= start_of_eight + 0.2 and results[0].end >= start_of_eight + len(wave) / rate - 0.2


def test_repeated_parts_are_embedded_once(engine):
    part = QueryPart("image", path=corpus_files("image", "5", 1)[0])
    hits = engine.planner.cache.hits
    engine.search(_query(part, k=3))
    engine.search(_query(part, k=3))
    assert engine.planner.cache.hits == hits + 1


def test_bad_queries_name_the_field():
    with pytest.raises(QueryError, match="at least one part"):
        Query(())
    with pytest.raises(QueryError, match=r"parts\[0\].weight"):
        Query((QueryPart("text", text="x", weight=-1),))
    with pytest.raises(QueryError, match="k:"):
        Query((QueryPart("text", text="x"),), k=0)
    with pytest.raises(QueryError, match="targets"):
        Query((QueryPart("text", text="x"),), targets=("video",))
    with pytest.raises(QueryError, match="filters.modalities"):
        Query((QueryPart("text", text="x"),), filters=Filters(modalities=("video",)))


def test_cli_combined_query_feedback_explain_and_user_history(demo, capsys):
    image = str(corpus_files("image", "2", 1)[0])
    assert main(["search", "--index", str(demo), "--text", "two", "--image", image, "--weights", "1,2",
                 "--target", "image", "--user", "dee", "--explain", "--json", "-q"]) == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["plan"]["parts"][1]["weight"] == pytest.approx(2 / 3, abs=1e-3)
    assert all(r["label"] == "2" for r in out["results"])
    item = out["results"][0]["id"]
    assert main(["feedback", "--index", str(demo), "--user", "dee", "--item", str(item), "--like", "-q"]) == EXIT_OK
    capsys.readouterr()
    assert main(["user", "dee", "--index", str(demo), "--delete", "--json", "-q"]) == EXIT_OK
    history = json.loads(capsys.readouterr().out)
    assert history["deleted"] == 1 and history["events"][0]["item"] == item
    assert main(["feedback", "--index", str(demo), "--user", "dee", "--item", "99999999", "--like", "-q"]) == 1
    assert "99999999" in capsys.readouterr().err
    assert main(["search", "--index", str(demo), "--text", "two", "--weights", "1,2", "-q"]) == 1
    assert "weights" in capsys.readouterr().err


def test_mmr_diversifies_results(demo, starter):
    from crossmodal.settings import PersonalSettings

    part = QueryPart("text", text="a handwritten digit")
    labels = {}
    for lam in (1.0, 0.3):
        settings = Settings(personal=PersonalSettings(mmr_lambda=lam))
        with Engine.open(demo, aligner=starter, settings=settings) as engine:
            labels[lam] = _labels(engine.search(_query(part, targets=("image",), k=10)).results)
    assert len(set(labels[0.3][:3])) > len(set(labels[1.0][:3])), labels
