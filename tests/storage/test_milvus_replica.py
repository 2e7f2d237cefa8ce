"""A search node (`Engine.open_replica`, `crossmodal serve --replica`): a collection searched from
its Milvus server alone, with the collection folder out of reach. It must give the results the
folder's own engine gives (ids, scores, audio spans, texts, labels, filters checked exactly, a
uri glob that only a second copy of a file matches included), follow what the indexer publishes
(appended items, rebuilt collections with new names), and refuse what needs the folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support.browser import INSTALL_HINT, cards, chromium_path, serving
from support.cli import run_cli
from support.media import copy_digits, corpus_files
from support.tools import require

from crossmodal.cli import EXIT_ERROR, EXIT_OK
from crossmodal.core.engine import Engine
from crossmodal.demo.showcase import CORPUS_LIST
from crossmodal.errors import CollectionError, ReadOnlyError
from crossmodal.search.query import Filters, Query, QueryPart
from crossmodal.settings import IndexSettings, Settings
from crossmodal.storage.backends import milvus_manifest

QUERIES = [
    ("seven", ("image",), Filters()),
    ("a spoken nine", ("audio",), Filters()),
    ("three", ("text",), Filters()),
    ("four", ("image", "audio", "text"), Filters()),
    ("five", ("image", "audio", "text"), Filters(meta={"label": "5"})),
    ("two", ("image", "audio"), Filters(modalities=("audio",))),
    ("eight", ("image",), Filters(uri_glob="*/copies/*")),
    ("one", ("image", "audio", "text"), Filters(uri_glob="*/audio/*_theo_*")),
    ("six", ("image",), Filters(uri_glob="*/images/*_[38].png")),
    ("zero", ("image", "text"), Filters(after=0.0, before=4e9)),
    ("zero", ("image", "text"), Filters(after=4e9)),
]


def _settings(server) -> Settings:
    return Settings(index=IndexSettings(backend="milvus", milvus_uri=server.uri, milvus_token=server.token))


def _query(text: str, targets: tuple[str, ...], filters: Filters, k: int = 8, **kw) -> Query:
    return Query(parts=(QueryPart(modality="text", text=text),), k=k, targets=targets, filters=filters,
                 collapse=False, **kw)


def _shown(results) -> list[tuple]:
    return [(r.id, r.uri, round(r.score, 5), r.start, r.end, r.matched, r.text, r.label) for r in results]


@pytest.fixture(scope="module")
def built(milvus_server, tmp_path_factory, starter):
    """The demo corpus plus copies of four images in another folder (items with two uris), indexed
    into a collection whose indexes live in the test's Milvus server; the expected results of
    QUERIES from the folder's own engine; then the folder is moved away."""
    base = tmp_path_factory.mktemp("replica")
    copies = base / "copies"
    copies.mkdir()
    for src in corpus_files("image", "8", 2) + corpus_files("image", "3", 2):
        shutil.copy(src, copies / src.name)
    folder = base / "coll"
    with Engine.open(folder, create=True, settings=_settings(milvus_server), aligner=starter) as engine:
        engine.index([CORPUS_LIST, copies], progress=False)
        prefix = engine.collection.manifest["backend"]["prefix"]
        items = engine.counts()["items"]
        expected = [_shown(engine.search(_query(*q)).results) for q in QUERIES]
        page = [r.id for r in engine.search(_query("seven", ("image", "audio", "text"), Filters(), k=12)).results]
        two_uris = next(i for i in (engine.item(r.id) for r in engine.search(_query(*QUERIES[6])).results)
                        if len(i["uris"]) == 2)
    away = base / "moved-away"
    folder.rename(away)
    yield {"prefix": prefix, "expected": expected, "two_uris": two_uris, "folder": folder, "away": away,
           "base": base, "items": items, "page": page}
    if away.exists():
        away.rename(folder)


def test_a_search_node_gives_the_folders_results_without_the_folder(built, milvus_server, starter):
    assert not built["folder"].exists()
    assert all(built["expected"][:10]), "every query but the empty time window has results"
    assert built["expected"][10] == []
    assert any(r[1].split("/")[-2] == "copies" or r[0] == built["two_uris"]["id"] for r in built["expected"][6])
    with Engine.open_replica(milvus_server.uri, built["prefix"], aligner=starter) as node:
        assert node.read_only and node.folder is None
        for q, want in zip(QUERIES, built["expected"]):
            got = _shown(node.search(_query(*q)).results)
            assert got == want, q
        audio = node.search(_query("a spoken nine", ("audio",), Filters())).results
        assert all(r.start is not None and r.end > r.start for r in audio)
        explained = node.explain(_query("seven", ("image",), Filters()))
        assert explained.plan.calibration == "stored with the indexes"
        assert explained.results[0].explanation["relevance"] is not None
        item = node.item(built["two_uris"]["id"])
        assert sorted(item["uris"]) == sorted(built["two_uris"]["uris"])
        assert item["meta"] == built["two_uris"]["meta"] and item["modality"] == "image"
        assert node.health()["status"] == "ok" and node.health()["items"] == built["items"]


def test_a_search_node_refuses_what_needs_the_folder_and_ignores_users(built, milvus_server, starter):
    with Engine.open_replica(milvus_server.uri, built["prefix"], aligner=starter) as node:
        some = node.search(_query("seven", ("image",), Filters())).results[0]
        for call in (lambda: node.feedback("ana", some.id, "like"), lambda: node.export_user("ana"),
                     lambda: node.delete_user("ana"), lambda: node.recommend("ana"), lambda: node.similar(some.id),
                     lambda: node.index([built["base"] / "copies"]), lambda: node.remove([some.id]),
                     lambda: node.check(), lambda: node.duplicates()):
            with pytest.raises(ReadOnlyError, match="search node"):
                call()
        plain = _shown(node.search(_query("seven", ("image",), Filters())).results)
        assert _shown(node.search(_query("seven", ("image",), Filters(), user="ana")).results) == plain
        media = node.media(some.id)
        assert media.path is not None and media.path.name == Path(some.uri).name  # the files are at the same paths
    with pytest.raises(CollectionError, match="no published collection"):
        Engine.open_replica(milvus_server.uri, "cm_nothing_here", aligner=starter)


def test_crossmodal_search_replica_on_the_command_line(built, milvus_server, capsys):
    code, out, err = run_cli(capsys, "search", "--replica", built["prefix"], "--milvus-uri", milvus_server.uri,
                             "--text", "seven", "--target", "image", "-k", "8", "--no-collapse", "--json", "-q")
    assert code == EXIT_OK, err
    assert [(r["id"], round(r["score"], 5)) for r in json.loads(out)["results"]] == \
        [(w[0], w[2]) for w in built["expected"][0]]
    code, _, err = run_cli(capsys, "search", "--replica", built["prefix"], "--text", "seven", "-q")
    assert code == EXIT_ERROR and "--milvus-uri" in err


def test_a_search_node_follows_appends_and_rebuilds(built, milvus_server, starter, tmp_path):
    built["away"].rename(built["folder"])
    settings = _settings(milvus_server)
    media = copy_digits(tmp_path / "incoming", 1, 0)
    with Engine.open_replica(milvus_server.uri, built["prefix"], aligner=starter) as node, \
            Engine.open(built["folder"], settings=settings, aligner=starter) as writer:
        before = node.search(_query("seven", ("image",), Filters(uri_glob="*/incoming/*"))).results
        assert before == []
        writer.index([media], progress=False)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = node.search(_query("seven", ("image",), Filters(uri_glob="*/incoming/*"), k=20)).results
            if len(found) == 10:
                break
            time.sleep(0.2)
        assert len(found) == 10 and found[0].label == "7"
        old = dict(node.collection.manifest["indexes"])
        writer.migrate("milvus", milvus_server.uri)  # a rebuild in place: new Milvus collections, old ones dropped
        new = writer.collection.manifest["indexes"]
        assert all(new[n]["collection"] != old[n]["collection"] for n in old)
        # The node still names the dropped collections: its next search notices and takes the new manifest.
        again = node.search(_query("seven", ("image",), Filters(uri_glob="*/incoming/*"), k=20)).results
        assert _shown(again) == _shown(found)
        assert node.collection.manifest["indexes"]["joint"]["collection"] == new["joint"]["collection"]
        want = _shown(writer.search(_query("four", ("image", "audio", "text"), Filters())).results)
        assert _shown(node.search(_query("four", ("image", "audio", "text"), Filters())).results) == want
    built["folder"].rename(built["away"])


def test_an_old_layout_is_rewritten_by_the_next_index_run(milvus_server, starter, tmp_path):
    """Indexes written before search nodes (no ``details`` field) are rebuilt by the next sync, which
    also publishes the manifest a search node needs."""
    settings = _settings(milvus_server)
    media = copy_digits(tmp_path / "m", 1, 0)
    folder = tmp_path / "coll"
    with Engine.open(folder, create=True, settings=settings, aligner=starter) as engine:
        engine.index([media], progress=False)
        backend = engine.collection.backend
        manifest = json.loads((folder / "manifest.json").read_text())
        for entry in manifest["indexes"].values():
            entry.pop("fields")
        (folder / "manifest.json").write_text(json.dumps(manifest))
        milvus_manifest.drop(backend.client, backend.prefix)
        prefix = backend.prefix
    with pytest.raises(CollectionError, match="no published collection"):
        Engine.open_replica(milvus_server.uri, prefix, aligner=starter)
    with Engine.open(folder, settings=settings, aligner=starter) as engine:
        engine.index([media], progress=False)
        entries = engine.collection.manifest["indexes"]
        assert all(e["fields"] == 2 and e["collection"] != manifest["indexes"][n]["collection"]
                   for n, e in entries.items())
    with Engine.open_replica(milvus_server.uri, prefix, aligner=starter) as node:
        assert node.search(_query("seven", ("image",), Filters())).results[0].uri.endswith("_7.png")


@pytest.mark.slow
def test_crossmodal_serve_replica_answers_over_http(built, milvus_server):
    """`crossmodal serve --replica` in its own process, with no collection folder: its /api/search
    answers equal the expected results, and a write is a 409 naming the search node."""
    proc = subprocess.Popen([sys.executable, "-m", "crossmodal", "serve", "--replica", built["prefix"],
                             "--milvus-uri", milvus_server.uri, "--port", "0", "-q"], cwd=built["base"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "http://" in line, proc.stderr.read() if proc.poll() is not None else line
        url = line[line.index("http://"):].split()[0].rstrip("/")
        body = json.dumps({"text": "seven", "targets": ["image"], "k": 8, "collapse": False}).encode()
        req = urllib.request.Request(url + "/api/search", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            results = json.loads(resp.read())["results"]
        want = built["expected"][0]
        assert [(r["id"], round(r["score"], 5), r["label"]) for r in results] == [(w[0], w[2], w[7]) for w in want]
        assert all(not r["uri"].startswith("/") for r in results)  # shown from their roots, as any server does
        req = urllib.request.Request(url + "/api/feedback", data=json.dumps(
            {"item": results[0]["id"], "event": "like"}).encode(), headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=30)
        assert refused.value.code == 409 and "search node" in json.loads(refused.value.read())["error"]
        with urllib.request.urlopen(url + "/api/health", timeout=30) as resp:
            health = json.loads(resp.read())
        assert health["status"] == "ok" and health["items"] == built["items"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.slow
def test_the_web_ui_of_a_search_node(built, milvus_server):
    """The page of `serve --replica` in headless Chromium: a search shows the folder engine's
    results, and nothing that needs users is offered (likes, "for you", "more like this")."""
    chromium = chromium_path()
    require(chromium is not None, INSTALL_HINT)
    from playwright.sync_api import sync_playwright

    with serving(None, "--replica", built["prefix"], "--milvus-uri", milvus_server.uri) as url, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(bypass_csp=True)  # for the test's own probes; the app needs no eval
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            assert "search node" in page.text_content("header")
            page.fill("#k", "12")
            page.fill("#text", "seven")
            page.click("#search")
            page.wait_for_function("/result|No results/.test(document.getElementById('summary').textContent)"
                                   " || document.getElementById('message').textContent")
            assert not page.text_content("#message")
            assert [c["id"] for c in cards(page)] == built["page"]
            assert page.query_selector_all("button.like, button.dislike, button.more, #for-you, #forget") == []
            assert errors == []
        finally:
            browser.close()
