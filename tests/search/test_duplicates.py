"""Near-duplicates on real files in a real collection: copies index as separate items, a search
shows each content once with its copies listed (or every file with collapse off), distinct
items of the same digit stay apart, and the whole-collection listing finds exactly the groups."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from types import SimpleNamespace

import pytest
from support.copies import DISTINCT, GROUPS, names, write_copies
from support.media import index_paths

from crossmodal.core import Engine, query_from_fields
from crossmodal.errors import QueryError
from crossmodal.search import duplicates
from crossmodal.search.duplicates import collapse, ranked_groups
from crossmodal.settings import Settings


@pytest.fixture(scope="module")
def copies(tmp_path_factory, starter):
    root = tmp_path_factory.mktemp("copies")
    media = write_copies(root / "media")
    index_paths(root / "coll", [media], Settings(), progress=False, aligner=starter)
    return root


@pytest.fixture(scope="module")
def engine(copies, starter):
    with Engine.open(copies / "coll", aligner=starter) as eng:
        yield eng


def _search(engine: Engine, **fields):
    return engine.search(query_from_fields(fields)).results


def test_copies_are_indexed_as_separate_items(engine):
    counts = engine.counts()
    assert counts["items"] == counts["files"] == 12


@pytest.mark.parametrize("modality,query", [("image", "three.png"), ("audio", "seven.wav")])
def test_a_search_shows_one_card_with_its_copies(engine, copies, modality, query):
    results = _search(engine, **{modality: str(copies / "media" / query)}, targets=modality, k=5)
    ids = [r.id for r in results]
    assert len(ids) == len(set(ids))
    shown = [r for r in results if names([r.uri]) & GROUPS[modality]]
    assert len(shown) == 1, [(r.uri, r.copies) for r in results]
    card = shown[0]
    assert names([card.uri, *(c["uri"] for c in card.copies)]) == GROUPS[modality]
    assert all(c["score"] <= card.score for c in card.copies)
    assert {c["id"] for c in card.copies}.isdisjoint(ids)
    others = [r for r in results if r is not card]
    assert DISTINCT[modality] in names(r.uri for r in others), "the other take / other 3 is its own result"
    assert all(not r.copies for r in others)


def test_no_collapse_shows_every_file(engine, copies):
    for modality, query in (("image", "three.png"), ("audio", "seven.wav")):
        results = _search(engine, **{modality: str(copies / "media" / query)}, targets=modality, k=8, collapse=False)
        assert GROUPS[modality] <= names(r.uri for r in results)
        assert all(r.copies == [] for r in results)


def test_collapse_is_a_setting_and_a_query_field(copies, starter):
    settings = Settings().updated(search={"collapse_duplicates": False})
    with Engine.open(copies / "coll", aligner=starter, settings=settings) as eng:
        query = query_from_fields({"audio": str(copies / "media" / "seven.wav"), "targets": "audio", "k": 8})
        assert GROUPS["audio"] <= names(r.uri for r in eng.search(query).results)
        assert any(r.copies for r in eng.search(replace(query, collapse=True)).results)
    assert query_from_fields({"text": "x", "collapse": "false"}).collapse is False
    assert query_from_fields({"text": "x"}).collapse is None
    with pytest.raises(QueryError, match="collapse"):
        query_from_fields({"text": "x", "collapse": "maybe"})


def test_collapsing_asks_for_more_until_k_contents(engine, monkeypatch):
    """Four contents among nine files of images and sounds: k=4 gets all four, each once; the
    planner is asked for more than k, and again for more while groups eat the results."""
    asked = []
    run = engine.planner.run
    monkeypatch.setattr(engine.planner, "run", lambda query, pref: (asked.append(query.k), run(query, pref))[1])
    results = _search(engine, text="seven", targets="image,audio", k=4)
    assert len(results) == 4 and len({r.id for r in results}) == 4
    assert sum(1 + len(r.copies) for r in results) == 9
    assert asked == [14]

    fake = [SimpleNamespace(id=i) for i in range(1000)]
    monkeypatch.setattr(duplicates, "collapse", lambda results, catalog, threshold: results[:len(results) // 4])
    asks = []
    _, shown = duplicates.collapsed_search(lambda n: (asks.append(n), (None, fake[:n]))[1], 10, None, 0.98)
    assert asks == [20, 80] and len(shown) == 10


def test_texts_in_two_files_are_copies_and_other_texts_are_not(engine):
    results = _search(engine, text="seven swans", targets="text", k=3)
    assert len(results) == 2
    card = next(r for r in results if r.copies)
    assert names([card.uri, card.copies[0]["uri"]]) == GROUPS["text"]


def test_duplicates_lists_exactly_the_groups(engine):
    groups = engine.duplicates()
    found = {g.modality: names(u for item in g.items for u in item["uris"]) for g in groups}
    assert found == GROUPS
    assert all(len(g.items) == len(GROUPS[g.modality]) for g in groups)
    assert json.loads(json.dumps([g.as_dict() for g in groups]))[0]["items"][0].keys() == {"id", "modality", "uris"}
    with pytest.raises(QueryError, match="threshold"):
        engine.duplicates(0)


def test_ranked_groups_and_collapse_keep_rank_order(engine, copies):
    results = _search(engine, audio=str(copies / "media" / "seven.wav"), targets="audio", k=6, collapse=False)
    groups = ranked_groups(engine.collection.catalog, [r.id for r in results], 0.98)
    assert sorted(p for g in groups for p in g) == list(range(len(results)))
    assert all(g == sorted(g) for g in groups) and [g[0] for g in groups] == sorted(g[0] for g in groups)
    shown = collapse(results, engine.collection.catalog, 0.98)
    assert [r.id for r in shown] == [results[g[0]].id for g in groups]


def test_items_without_fingerprints_group_only_when_identical(copies, starter, tmp_path):
    """A collection indexed before fingerprints existed: copies the model embeds identically (WAV,
    its FLAC, and a quieter copy: the front end evens out volume) still group; lossy or resized
    copies do not."""
    folder = tmp_path / "old"
    shutil.copytree(copies / "coll", folder)
    with Engine.open(folder, aligner=starter) as eng:
        catalog = eng.collection.catalog
        with catalog.transaction() as conn:
            conn.execute("UPDATE items SET meta = json_remove(meta, '$.fingerprint')")
        groups = {g.modality: names(u for item in g.items for u in item["uris"]) for g in eng.duplicates()}
    assert groups["audio"] == {"seven.wav", "seven.flac", "seven_quiet.wav"}
    assert "image" not in groups
    assert groups["text"] == GROUPS["text"]


def test_an_image_with_its_caption_is_a_copy_only_with_the_same_caption(tmp_path, starter):
    media = write_copies(tmp_path / "media")
    for stem in ("three", "three_big"):
        (media / f"{stem}.txt").write_text("a handwritten three")
    (media / "three.jpg").rename(media / "three_jpeg.jpg")
    (media / "three_jpeg.txt").write_text("a different caption")
    index_paths(tmp_path / "coll", [media], Settings(), progress=False, aligner=starter)
    with Engine.open(tmp_path / "coll", aligner=starter) as eng:
        groups = [names(u for item in g.items for u in item["uris"]) for g in eng.duplicates()]
    assert {"three.png", "three_big.png"} in groups
    assert not any("three_jpeg.jpg" in g for g in groups)
