#!/usr/bin/env python
"""What a search node costs per query: the same queries through the collection folder's engine and
through a search node (`Engine.open_replica`) on one Milvus server, alternating, in one run.

The demo corpus (830 items) is indexed into a collection whose indexes live in the server. Then
--rounds rounds of text queries (every digit word, all targets, a third of them filtered by
label, a third by a uri glob) run one at a time through each engine in turn; both give the same
results (checked on every query), so the difference is where the candidates' vectors and fields
come from: the catalog (SQLite, local) or Milvus (one more round trip). Prints JSON: p50/p99
per engine, the ratio of medians, how many queries gave identical results, and the mean size of
the ``details`` field each entity carries for search nodes (beside a 512-D vector's 2,048 bytes).

Without --milvus-uri it starts a Milvus server of its own (the `milvus` package, the tests'
launcher) in a temporary folder and stops it at the end.

    python scripts/bench_search_node.py [--rounds 5] [--milvus-uri URI] [--out build/bench_search_node.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from json_report import emit  # noqa: E402

from crossmodal.core.engine import Engine  # noqa: E402
from crossmodal.demo.showcase import CORPUS_LIST  # noqa: E402
from crossmodal.search.query import Filters, Query, QueryPart  # noqa: E402
from crossmodal.settings import IndexSettings, Settings  # noqa: E402

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def queries() -> list[Query]:
    out = []
    for i, word in enumerate(WORDS):
        for j, filters in enumerate([Filters(), Filters(meta={"label": str((i + 3) % 10)}),
                                     Filters(uri_glob="*/audio/*")]):
            out.append(Query(parts=(QueryPart(modality="text", text=f"{word} {j}"),), k=10,
                             targets=("image", "audio", "text"), filters=filters, collapse=False))
    return out


def shown(results) -> list[tuple]:
    return [(r.id, round(r.score, 5), r.start, r.text) for r in results]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run(uri: str, token: str, rounds: int, work: Path) -> dict:
    settings = Settings(index=IndexSettings(backend="milvus", milvus_uri=uri, milvus_token=token))
    folder = work / "coll"
    started = time.perf_counter()
    with Engine.open(folder, create=True, settings=settings) as engine:
        engine.index([CORPUS_LIST], progress=False)
        prefix = engine.collection.manifest["backend"]["prefix"]
        joint = engine.collection.index("joint")
        rows = engine.collection.backend.client.query(joint.collection, filter="id >= 0", output_fields=["details"],
                                                      limit=16_384)
        sizes = [len(json.dumps(r["details"], ensure_ascii=False, separators=(",", ":")).encode()) for r in rows]
        vectors = len(rows)
    index_s = time.perf_counter() - started
    times: dict[str, list[float]] = {"folder": [], "node": []}
    same = total = 0
    with Engine.open(folder, settings=settings) as local, \
            Engine.open_replica(uri, prefix, token=token, settings=settings) as node:
        local.load()
        node.load()
        for q in queries():  # warm both (calibration, query cache)
            local.search(q)
            node.search(q)
        for _ in range(rounds):
            for q in queries():
                answers = {}
                for name, engine in (("folder", local), ("node", node)):
                    t0 = time.perf_counter()
                    answers[name] = shown(engine.search(q).results)
                    times[name].append(time.perf_counter() - t0)
                total += 1
                same += answers["folder"] == answers["node"]
    stats = {name: {"p50_ms": round(1000 * statistics.median(v), 2), "p99_ms": round(1000 * percentile(v, 0.99), 2),
                    "queries": len(v)} for name, v in times.items()}
    return {"items": 830, "vectors": vectors, "details_bytes_mean": round(statistics.mean(sizes), 1),
            "details_bytes_max": max(sizes), "index_s": round(index_s, 1), "engines": stats,
            "node_over_folder_p50": round(stats["node"]["p50_ms"] / stats["folder"]["p50_ms"], 3),
            "identical_results": f"{same}/{total}", "load_average": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--milvus-uri", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-node-") as tmp:
        work = Path(tmp)
        server = None
        uri, token = args.milvus_uri, os.environ.get("CROSSMODAL_MILVUS_TOKEN", "")
        if uri is None:
            sys.path.insert(0, str(ROOT / "tests"))
            from support.milvus_server import start_milvus

            server = start_milvus(work / "milvus")
            uri, token = server.uri, server.token
        try:
            result = run(uri, token, args.rounds, work)
        finally:
            if server is not None:
                server.stop()
    emit(result, args.out)


if __name__ == "__main__":
    main()
