"""Two `crossmodal serve` processes and one `crossmodal index` on one collection whose indexes live
in a real Milvus server, all at once: no search fails or shows a half-written state (a result
the filter excludes, a duplicate, an item the catalog does not hold), the new items reach both
servers within a bounded time after the indexer publishes, and at the end the servers, Milvus
and the catalog agree on every count. Prints the run's figures (docs/scale.md quotes them)."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support.media import corpus_files, index_paths

from crossmodal.settings import IndexSettings, Settings
from crossmodal.storage.collection import INDEX_KINDS, Collection

NEW_PER_LABEL = 4
APPEAR_WITHIN_S = 15.0
"""Bound on the time from the indexer's exit to both servers returning every new item."""


def _crossmodal(*args: str, timeout: float = 300) -> dict:
    done = subprocess.run([sys.executable, "-m", "crossmodal", *args, "--json", "-q"], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _post(url: str, body: dict, timeout: float = 30) -> tuple[int, dict]:
    request = urllib.request.Request(url + "api/search", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {"error": exc.read().decode(errors="replace")}


def _get(url: str, path: str) -> dict:
    with urllib.request.urlopen(url + path, timeout=30) as resp:
        return json.loads(resp.read())


class Hammer(threading.Thread):
    """Searches one server in a loop (a filtered query and an unfiltered one) and records every
    failure and every sign of a half-written state."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.problems: list[str] = []
        self.seen_ids: set[int] = set()

    def run(self) -> None:
        queries = [({"text": "a handwritten seven", "k": 10, "targets": "image",
                     "filters": {"uri_glob": "*_7.png"}}, "_7.png"),
                   ({"text": "someone saying three", "k": 20, "targets": "image,audio"}, None)]
        turn = 0
        while not self.stop.is_set():
            body, suffix = queries[turn % 2]
            turn += 1
            started = time.perf_counter()
            try:
                status, out = _post(self.url, body)
            except OSError as exc:
                self.problems.append(f"{self.url}: {exc}")
                continue
            self.latencies.append(time.perf_counter() - started)
            if status != 200:
                self.problems.append(f"{self.url}: HTTP {status} {out}")
                continue
            ids = [r["id"] for r in out["results"]]
            if len(ids) != len(set(ids)):
                self.problems.append(f"duplicate results {ids}")
            if suffix is not None and not all(r["uri"].endswith(suffix) for r in out["results"]):
                self.problems.append(f"filter leaked: {[r['uri'] for r in out['results']]}")
            if not out["results"]:
                self.problems.append(f"no results at {time.monotonic():.1f}: {json.dumps(out)[:600]}")
            self.seen_ids.update(ids)


def _serve(collection: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "crossmodal", "serve", "--collection", str(collection),
                             "--port", "0", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "http://" in line, proc.stderr.read() if proc.poll() is not None else line
    return proc, line[line.index("http://"):].split()[0].rstrip("/") + "/"


def _new_items_seen(url: str, expected: int) -> int:
    status, out = _post(url, {"text": "a handwritten digit", "k": 100, "targets": "image",
                              "filters": {"uri_glob": "*/incoming/*"}})
    assert status == 200, out
    return len(out["results"])


@pytest.mark.slow
def test_two_servers_and_an_indexer_on_one_milvus_collection(milvus_server, tmp_path, starter):
    media = tmp_path / "media"
    (media / "first").mkdir(parents=True)
    for label in "0123456789":
        for src in corpus_files("image", label, 2) + corpus_files("audio", label, 1):
            shutil.copy(src, media / "first" / src.name)
    collection = tmp_path / "shared"
    settings = Settings(index=IndexSettings(backend="milvus", milvus_uri=milvus_server.uri))
    assert index_paths(collection, [media], settings, progress=False, aligner=starter).added == 30

    servers = [_serve(collection) for _ in range(2)]
    hammers = [Hammer(url) for _, url in servers]
    try:
        for hammer in hammers:
            hammer.start()
        time.sleep(2.0)
        incoming = media / "incoming"
        incoming.mkdir()
        for label in "0123456789":
            for src in corpus_files("image", label, 2 + NEW_PER_LABEL)[2:]:
                shutil.copy(src, incoming / src.name)
        new = 10 * NEW_PER_LABEL
        started = time.monotonic()
        second = _crossmodal("index", str(media), "--collection", str(collection))
        indexed_s = time.monotonic() - started
        assert second["added"] == new
        published = time.monotonic()
        waiting = {url for _, url in servers}
        appear_s: dict[str, float] = {}
        while waiting and time.monotonic() - published < APPEAR_WITHIN_S:
            for url in sorted(waiting):
                if _new_items_seen(url, new) == new:
                    appear_s[url] = time.monotonic() - published
                    waiting.discard(url)
            time.sleep(0.05)
        assert not waiting, f"new items not in {waiting} {APPEAR_WITHIN_S} s after the indexer published"
        time.sleep(1.0)  # searches of the published state too
    finally:
        for hammer in hammers:
            hammer.stop.set()
        for hammer in hammers:
            hammer.join(timeout=60)
        healths = []
        for proc, url in servers:
            if proc.poll() is None:
                try:
                    healths.append(_get(url, "api/health"))
                except OSError:
                    pass
                proc.terminate()
            proc.communicate(timeout=60)

    problems = [p for h in hammers for p in h.problems]
    assert not problems, problems[:5]
    searches = sum(len(h.latencies) for h in hammers)
    assert all(len(h.latencies) >= 5 for h in hammers), [len(h.latencies) for h in hammers]
    with Collection.open(collection) as coll:
        items = coll.catalog.counts()["items"]
        assert items == 30 + new
        assert {h["items"] for h in healths} == {items} and len(healths) == 2
        assert all(h["status"] == "ok" and not h["stale"] for h in healths), healths
        for name, kinds in INDEX_KINDS.items():
            published = coll.manifest["indexes"][name]["ntotal"]
            assert coll.index(name).count() == coll.catalog.vector_count(kinds) == published
        known = set(coll.catalog.filter_fields(None))
    assert {i for h in hammers for i in h.seen_ids} <= known
    latencies = sorted(x for h in hammers for x in h.latencies)
    print(json.dumps({"searches": searches, "failed": 0, "search_p50_s": round(statistics.median(latencies), 3),
                      "search_max_s": round(latencies[-1], 3), "index_run_s": round(indexed_s, 1),
                      "appear_after_publish_s": {str(i): round(s, 2) for i, s in enumerate(appear_s.values())},
                      "items": items}))
