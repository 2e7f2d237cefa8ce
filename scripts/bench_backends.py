#!/usr/bin/env python
"""Benchmark the index backends: FAISS (flat, and the kind ``auto`` builds) against Milvus Lite.

Same data for every backend: --items (default 100,000) clustered unit vectors of D=128 (the
starter model's width), stored in one real catalog as image items with a ``label``. Per
configuration, one index over all of them is built through the backend interface the collection
uses (build + persist, timed; for Milvus Lite that is creating the collection, writing the rows
with their filter fields, flushing). Then --queries single-vector queries (drawn like the data,
never from it) are run one at a time as the planner runs them: p50/p99 latency, and recall@10
against exact search. A filtered query (label = 3: 10% of the vectors) is timed too, FAISS with
the allowed ids as a selector, Milvus with the filter pushed down as an expression.

Prints one JSON object (and writes it to --out). Not a test: run it by hand.

    python scripts/bench_backends.py [--items 100000] [--queries 200] [--out build/bench_backends.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crossmodal.items import NewItem
from crossmodal.search.query import Filters
from crossmodal.settings import IndexSettings
from crossmodal.storage.backends import faiss_search
from crossmodal.storage.backends.base import IndexBackend, VectorIndex
from crossmodal.storage.backends.faiss_backend import FaissBackend
from crossmodal.storage.backends.milvus_backend import MilvusBackend, new_spec
from crossmodal.storage.catalog import Catalog

DIM = 128


def clustered(n: int, clusters: int, rng: np.random.Generator, centres: np.ndarray | None = None):
    """Unit vectors around random unit centres (cosine ~0.85 to their centre), and their cluster."""
    if centres is None:
        centres = rng.normal(size=(clusters, DIM)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    which = rng.integers(0, len(centres), n)
    x = centres[which] + rng.normal(scale=0.6 / np.sqrt(DIM), size=(n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), which, centres


def fill_catalog(catalog: Catalog, vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """One image item per vector, in one transaction; returns the vector ids the catalog gave them."""
    with catalog.transaction():
        for i, (vector, label) in enumerate(zip(vectors, labels)):
            item = NewItem(f"h{i}", "image", ("image",), {"label": str(label)}, vectors={"image": vector})
            catalog.link_file(f"/synthetic/{i}.png", catalog.add_item(item), 1, 1_700_000_000_000_000_000 + i)
    ids, _ = catalog.vectors(["image"])
    return ids


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.array(values), q)), 3)


def measure(backend: IndexBackend, settings: IndexSettings, ids: np.ndarray, vectors: np.ndarray,
            queries: np.ndarray, exact: np.ndarray, allowed: np.ndarray, filters: Filters,
            filtered_queries: int) -> dict:
    kind, params = backend.plan(len(ids), DIM, settings)
    faiss_search.set_threads(0)
    start = time.perf_counter()
    index: VectorIndex = backend.build("image", ids, vectors, kind, params)
    entry = backend.persist("image", index, 0)
    build_s = time.perf_counter() - start
    faiss_search.set_threads(1)
    latencies, hits = [], 0
    for q, truth in zip(queries, exact):
        t0 = time.perf_counter()
        _, got = index.search(q[None, :], 10)
        latencies.append((time.perf_counter() - t0) * 1000)
        hits += np.intersect1d(truth, got[0]).size
    filtered = []
    for q in queries[:filtered_queries]:
        t0 = time.perf_counter()
        if index.pushes_filters:
            _, got = index.search(q[None, :], 10, filters=filters)
        else:
            _, got = index.search(q[None, :], 10, selector_ids=allowed)
        filtered.append((time.perf_counter() - t0) * 1000)
        assert np.isin(got[0][got[0] >= 0], allowed).all()
    out = {"kind": entry["kind"], "build_s": round(build_s, 2), "ntotal": entry["ntotal"],
           "latency_ms_p50": percentile(latencies, 50), "latency_ms_p99": percentile(latencies, 99),
           "recall_at_10": round(hits / (10 * len(queries)), 4),
           "filtered_latency_ms_p50": percentile(filtered, 50), "filtered_queries": len(filtered)}
    backend.discard({})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--filtered-queries", type=int, default=20)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("build/bench_backends.json"))
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    vectors, cluster, centres = clustered(args.items, args.clusters, rng)
    queries, _, _ = clustered(args.queries, args.clusters, np.random.default_rng(args.seed + 1), centres)
    labels = cluster % 10
    result: dict = {
        "benchmark": "crossmodal index backends (scripts/bench_backends.py)",
        "data": {"items": args.items, "dim": DIM, "clusters": args.clusters, "queries": args.queries,
                 "filter": "meta label = 3 (10% of the vectors)",
                 "vectors": "clustered unit vectors, cosine ~0.85 to their cluster centre; queries drawn alike"},
        "machine": {"cpus": os.cpu_count(), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
                    "python": platform.python_version()},
        "versions": {"faiss": faiss.__version__, **_milvus_versions()},
        "timing": "single queries, one at a time, through VectorIndex.search (what the planner calls); "
                  "FAISS searches on 1 thread (the serving default), builds on all cores",
    }
    with tempfile.TemporaryDirectory(prefix="crossmodal-backends-") as tmp:
        folder = Path(tmp)
        catalog = Catalog(folder / "catalog.sqlite")
        start = time.perf_counter()
        ids = fill_catalog(catalog, vectors, labels)
        result["catalog_fill_s"] = round(time.perf_counter() - start, 1)
        _, exact_rows = faiss.knn(queries, vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)
        exact = ids[exact_rows]
        filters = Filters(meta={"label": "3"})
        allowed = catalog.filter_vector_ids(meta=filters.meta)
        configs = {
            "faiss_flat": (FaissBackend(folder), IndexSettings(kind="flat")),
            "faiss_auto": (FaissBackend(folder), IndexSettings(kind="auto")),
            "faiss_ivf_flat": (FaissBackend(folder), IndexSettings(kind="ivf_flat")),
            "milvus_lite_flat": (MilvusBackend(folder, catalog, new_spec("", "bench")), IndexSettings(kind="flat")),
            "milvus_lite_hnsw": (MilvusBackend(folder, catalog, new_spec("", "bench")), IndexSettings(kind="hnsw")),
        }
        runs = {}
        for name, (backend, settings) in configs.items():
            print(f"bench_backends: {name} ...", file=sys.stderr, flush=True)
            runs[name] = measure(backend, settings, ids, vectors, queries, exact, allowed, filters,
                                 args.filtered_queries)
            backend.close()
            print(f"bench_backends: {name}: {runs[name]}", file=sys.stderr, flush=True)
        catalog.close()
    result["results"] = runs
    result["notes"] = [
        f"auto builds '{runs['faiss_auto']['kind']}' at {args.items} vectors (flat up to flat_max=100,000; "
        "ivf_flat above, shown as faiss_ivf_flat)",
        "the Milvus backend's auto builds FLAT up to flat_max and HNSW above (milvus_lite_hnsw)",
        "Milvus Lite is a pure-Python Milvus in this process, reached over local gRPC; a Milvus server's "
        "latency depends on its deployment and is not measured here",
    ]
    text = json.dumps(result, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0


def _milvus_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"pymilvus": version("pymilvus"), "milvus_lite": version("milvus-lite")}


if __name__ == "__main__":
    sys.exit(main())
