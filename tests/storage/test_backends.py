"""The same behaviour from both index backends: FAISS, and Milvus (Milvus Lite in the collection
folder, the same code against Milvus Lite's gRPC server, and "milvus-server": a real Milvus standalone
server started by the `milvus_server` fixture). Filters, removal, incremental
re-indexing, personalised rerank and the HTTP API run against each; exact search agrees between
flat FAISS and Milvus; `crossmodal migrate` moves a collection both ways without re-embedding."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from support.cli import run_cli
from support.media import allowed_item_ids, brute_force_top, copy_digits, corpus_files, index_paths, remove_items

from crossmodal.cli import EXIT_ERROR, EXIT_OK
from crossmodal.core.engine import Engine
from crossmodal.demo.showcase import CORPUS_LIST
from crossmodal.search.query import Filters, Query, QueryPart
from crossmodal.server import create_app
from crossmodal.settings import IndexSettings, Settings
from crossmodal.storage.backends.milvus_filters import filter_expression, glob_to_like
from crossmodal.storage.collection import INDEX_KINDS, Collection

BACKENDS = ["faiss", "milvus", "milvus-server"]


def _settings(backend: str, **index) -> Settings:
    return Settings(index=IndexSettings(backend=backend, **index))


def _backend_settings(request, backend: str) -> Settings:
    """The settings for one of BACKENDS; "milvus-server" starts the session's Milvus server."""
    if backend != "milvus-server":
        return _settings(backend)
    server = request.getfixturevalue("milvus_server")
    return _settings("milvus", milvus_uri=server.uri, milvus_token=server.token)


def _labels(results) -> list[str | None]:
    return [r.label for r in results]


@pytest.fixture(scope="module", params=BACKENDS)
def demo(request, tmp_path_factory, starter) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp(f"demo-{request.param}") / "coll"
    index_paths(folder, [CORPUS_LIST], _backend_settings(request, request.param), progress=False, aligner=starter)
    return request.param, folder


@pytest.fixture()
def engine(demo, starter):
    with Engine.open(demo[1], aligner=starter) as eng:
        yield eng
        eng.delete_user("ana")


def test_the_manifest_names_the_backend_and_every_command_uses_it(demo, capsys):
    backend, folder = demo
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["backend"]["name"] == backend.removesuffix("-server")
    assert (folder / "milvus.db").exists() == (backend == "milvus")
    assert any(folder.glob("*.faiss")) == (backend == "faiss")
    with Collection.open(folder) as coll:
        assert coll.backend.name == backend.removesuffix("-server")
        for name, kinds in INDEX_KINDS.items():
            assert coll.index(name).count() == coll.catalog.vector_count(kinds) == manifest["indexes"][name]["ntotal"]
    code, out, err = run_cli(capsys, "search", "--index", str(folder), "--text", "four", "--target", "image", "-k", "5",
                          "--json", "-q")
    assert code == EXIT_OK, err
    assert [r["label"] for r in json.loads(out)["results"]].count("4") >= 4


@pytest.mark.parametrize("filters", [
    Filters(meta={"label": "3"}),
    Filters(uri_glob="*/audio/*_theo_*"),
    Filters(uri_glob="*/images/*_[38].png"),
    Filters(modalities=("audio",)),
    Filters(meta={"label": "8"}, uri_glob="*/images/*"),
    Filters(modalities=("text", "image"), meta={"source": "mnist-t10k"}),
    Filters(after=0.0, before=1.0),
    Filters(after=1.0),
])
def test_filters_never_leak_and_match_brute_force(demo, starter, filters):
    backend, folder = demo
    with Engine.open(folder, aligner=starter) as engine:
        cat = engine.collection.catalog
        allowed = allowed_item_ids(cat, filters)
        part = QueryPart("text", text="someone saying seven")
        response = engine.search(Query((part,), targets=("image", "audio", "text"), k=10, filters=filters))
        assert {r.id for r in response.results} <= allowed
        calibration, _ = engine.planner.calibrations.get(engine.collection)
        expected = brute_force_top(engine.collection.catalog, engine.planner.embed_part(part), allowed,
                                   ("image", "audio", "text"), 10, calibration)
        assert [r.id for r in response.results] == expected
        mode = response.plan.filter_mode
        assert ("filter expression" in mode) == backend.startswith("milvus"), mode


def test_likes_raise_a_class_for_that_user_only(engine):
    _, vectors = engine.collection.catalog.vectors(["image", "audio", "text"])
    neutral = QueryPart("image", vector=vectors.mean(axis=0))
    query = dict(targets=("image",), k=10)
    before = engine.search(Query((neutral,), user="ana", **query)).results
    other_before = engine.search(Query((neutral,), user="bob", **query)).results
    target = next(lab for lab in "0123456789" if _labels(before).count(lab) <= 1)
    liked = engine.search(Query((QueryPart("text", text=f"the digit {target}"),), targets=("image",), k=5)).results
    for hit in liked:
        engine.feedback("ana", hit.id, "like")
    after = engine.search(Query((neutral,), user="ana", **query))
    assert _labels(after.results).count(target) >= 6, (target, _labels(before), _labels(after.results))
    assert after.plan.beta > 0
    assert [r.id for r in engine.search(Query((neutral,), user="bob", **query)).results] == \
        [r.id for r in other_before]


def test_http_api_filters_are_the_same_through_either_backend(engine):
    client = create_app(engine).test_client()
    body = {"text": "someone saying two", "k": 5, "targets": "audio,image", "filters": {"meta": {"label": "2"}}}
    results = client.post("/api/search", json=body).get_json()["results"]
    assert len(results) == 5 and all(r["label"] == "2" for r in results)


def _index_entries(folder: Path) -> dict[str, str]:
    manifest = json.loads((folder / "manifest.json").read_text())
    return {name: entry.get("collection") or entry["file"] for name, entry in manifest["indexes"].items()}


def _names(results) -> list[str]:
    return [Path(r.uri).name for r in results]


@pytest.mark.parametrize("backend", BACKENDS)
def test_incremental_reindex_removal_and_file_level_changes(backend, tmp_path, starter, request):
    media = tmp_path / "media"
    media.mkdir()
    for label in "1256":
        shutil.copy(corpus_files("image", label, 1)[0], media / f"digit_{label}.png")
    target = tmp_path / "c"
    settings = _backend_settings(request, backend)
    index_paths(target, [media], settings, progress=False, aligner=starter)
    first = _index_entries(target)

    shutil.copy(corpus_files("image", "8", 1)[0], media / "eight.png")
    report = index_paths(target, [media], settings, progress=False, aligner=starter)
    assert report.added == 1
    if backend.startswith("milvus"):
        assert _index_entries(target) == first, "appending must reuse the published Milvus collections"
    query = Query((QueryPart("text", text="eight"),), targets=("image",), k=10)
    with Engine.open(target, aligner=starter) as engine:
        assert _names(engine.search(query).results)[0] == "eight.png"

    removed, missing = remove_items(target, [], [str(media / "eight.png")], settings)
    assert (removed, missing) == (1, [])
    (media / "eight.png").unlink()
    with Collection.open(target) as coll:
        for name, kinds in INDEX_KINDS.items():
            assert coll.index(name).count() == coll.catalog.vector_count(kinds)
    with Engine.open(target, aligner=starter) as engine:
        assert "eight.png" not in _names(engine.search(query).results)

    # File-level changes that add no vectors: a file renamed (its item keeps its vector, under a
    # new uri) and a file touched into the past. Filters on uri and time must see both.
    (media / "digit_5.png").rename(media / "renamed_five.png")
    old = 1_000_000_000.0
    os.utime(media / "digit_6.png", (old, old))
    report = index_paths(target, [media], settings, prune=True, progress=False, aligner=starter)
    assert (report.added, report.duplicates, report.removed) == (0, 1, 1)
    by_glob = Query((QueryPart("text", text="five"),), targets=("image",), k=10,
                    filters=Filters(uri_glob="*/renamed_*"))
    by_time = Query((QueryPart("text", text="six"),), targets=("image",), k=10,
                    filters=Filters(before=old + 1))
    with Engine.open(target, aligner=starter) as engine:
        assert _names(engine.search(by_glob).results) == ["renamed_five.png"]
        assert _names(engine.search(by_time).results) == ["digit_6.png"]


def test_exact_search_agrees_between_flat_faiss_and_milvus_and_migrate_moves_both_ways(tmp_path, starter, capsys):
    media = copy_digits(tmp_path / "media", 4, 2)
    (media / "notes.txt").write_text("Someone saying seven.\n\nA handwritten four.\n")
    faiss_dir, milvus_dir = tmp_path / "flat", tmp_path / "milvus"
    index_paths(faiss_dir, [media], _settings("faiss", kind="flat"), progress=False, aligner=starter)
    shutil.copytree(faiss_dir, milvus_dir)
    code, out, err = run_cli(capsys, "migrate", "--index", str(milvus_dir), "--to", "milvus", "--json", "-q")
    assert code == EXIT_OK, err
    assert json.loads(out)["backend"]["name"] == "milvus"
    assert not any(milvus_dir.glob("*.faiss")) and (milvus_dir / "milvus.db").is_dir()

    rng = np.random.default_rng(7)
    with Collection.open(faiss_dir) as flat, Collection.open(milvus_dir) as milvus:
        assert milvus.backend.name == "milvus" and flat.backend.name == "faiss"
        for name, kinds in INDEX_KINDS.items():
            _, stored = flat.catalog.vectors(kinds)
            noise = rng.normal(scale=0.3, size=(8, stored.shape[1])).astype(np.float32)
            queries = stored[rng.choice(len(stored), 8)] + noise
            queries /= np.linalg.norm(queries, axis=1, keepdims=True)
            for q in queries:
                f_scores, f_ids = flat.search(name, q, 15)
                m_scores, m_ids = milvus.search(name, q, 15)
                assert f_ids.tolist() == m_ids.tolist(), name
                np.testing.assert_allclose(m_scores, f_scores, atol=1e-4)
    part = QueryPart("text", text="someone saying seven")
    for filters in (Filters(), Filters(meta={"label": "7"}), Filters(uri_glob="*/audio/*")):
        query = Query((part,), k=8, filters=filters)
        with Engine.open(faiss_dir, aligner=starter) as a, Engine.open(milvus_dir, aligner=starter) as b:
            left, right = a.search(query).results, b.search(query).results
        assert [r.id for r in left] == [r.id for r in right]
        assert [r.score for r in left] == pytest.approx([r.score for r in right], abs=1e-4)

    code, out, err = run_cli(capsys, "migrate", "--index", str(milvus_dir), "--to", "faiss", "-q")
    assert code == EXIT_OK, err
    assert "faiss" in out
    assert not (milvus_dir / "milvus.db").exists() and len(list(milvus_dir.glob("*.faiss"))) == len(INDEX_KINDS)
    with Engine.open(milvus_dir, aligner=starter) as engine:
        results = engine.search(Query((part,), targets=("audio",), k=2)).results
    assert all(name.startswith("7_") for name in _names(results)), _names(results)


def test_cli_backend_flags_token_never_stored_and_a_mismatch_refused(tmp_path, capsys):
    media = tmp_path / "media"
    media.mkdir()
    for label in "39":
        shutil.copy(corpus_files("image", label, 1)[0], media / f"digit_{label}.png")
    target = str(tmp_path / "c")
    code, out, err = run_cli(capsys, "index", str(media), "--index", target, "--backend", "milvus",
                          "--milvus-token", "s3cret-token", "--json", "-q")
    assert code == EXIT_OK, err
    manifest_text = (tmp_path / "c" / "manifest.json").read_text()
    assert "s3cret-token" not in manifest_text
    assert json.loads(manifest_text)["backend"]["uri"] == "milvus.db"
    code, _, err = run_cli(capsys, "index", str(media), "--index", target, "--backend", "faiss", "-q")
    assert code == EXIT_ERROR and "crossmodal migrate" in err
    code, out, err = run_cli(capsys, "search", "--index", target, "--text", "nine", "--target", "image", "-k", "1",
                          "--json", "-q")
    assert code == EXIT_OK and json.loads(out)["results"][0]["uri"].endswith("digit_9.png")
    code, _, err = run_cli(capsys, "index", str(media), "--index", target, "--rebuild", "--backend", "faiss", "-q")
    assert code == EXIT_OK, err
    assert not (tmp_path / "c" / "milvus.db").exists()
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["backend"] == {"name": "faiss"}


def test_the_same_code_against_a_milvus_server(tmp_path, starter, capsys):
    from milvus_lite.server_manager import server_manager_instance

    server_file = tmp_path / "server" / "milvus.db"
    server_file.parent.mkdir()
    uri = server_manager_instance.start_and_get_uri(str(server_file))
    assert uri and uri.startswith("http://")
    try:
        media = tmp_path / "media"
        media.mkdir()
        for label in "47":
            shutil.copy(corpus_files("image", label, 1)[0], media / f"digit_{label}.png")
        target = tmp_path / "c"
        code, _, err = run_cli(capsys, "index", str(media), "--index", str(target), "--backend", "milvus",
                            "--milvus-uri", uri, "-q")
        assert code == EXIT_OK, err
        manifest = json.loads((target / "manifest.json").read_text())
        assert manifest["backend"]["uri"] == uri and not (target / "milvus.db").exists()
        with Engine.open(target, aligner=starter) as engine:
            results = engine.search(Query((QueryPart("text", text="seven"),), targets=("image",), k=2)).results
        assert _names(results)[0] == "digit_7.png"
        code, _, err = run_cli(capsys, "index", str(media), "--index", str(tmp_path / "d"), "--backend", "milvus",
                            "--milvus-uri", uri.replace("http://", "http://root:pw@"), "-q")
        assert code == EXIT_ERROR and "--milvus-token" in err
    finally:
        server_manager_instance.release_server(str(server_file))


def test_filters_become_expressions_that_never_exclude_what_the_catalog_allows():
    assert glob_to_like("*/audio/*_theo_*") == "%/audio/%_theo_%"
    assert glob_to_like("/x/[ab]?c%*") == "/x/__c_%"
    assert glob_to_like("a[]]b[!x]") == "a_b_"
    expression = filter_expression(Filters(modalities=("image",), uri_glob="*.png", meta={'k"ey': "v\\1"},
                                           after=1.5, before=2.0))
    assert expression == ('modality in ["image"] and (n_uris != 1 or uri like "%.png") and '
                          'meta["k\\"ey"] == "v\\\\1" and mtime >= 1.5 and mtime <= 2.0')
    assert filter_expression(Filters()) is None
