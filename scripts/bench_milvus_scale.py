#!/usr/bin/env python
"""Milvus's own cost per million vectors: a real Milvus server holding --n synthetic 512-D
entities in crossmodal's entity layout (filter fields and a ``details`` field of a typical size),
for each index kind asked for.

Per kind: insert time (rows/s through pymilvus, batches of --batch), the index build, the disk the
server's data folder grew by (binlogs plus the index files), the server process's resident memory
after the collection is loaded (minus before), and p50 search latency of --queries single queries
(k = 10) with recall@10 against exact search on a sample. The vectors are clustered unit vectors
like `bench_scale.py`'s, so the FAISS figures there and these can be set side by side.

Without --milvus-uri it starts its own server (the `milvus` package, the tests' launcher) under
--work (default: a temporary folder; it needs about 3 GB of disk per million vectors and kind)
and stops it at the end; the memory figure needs that (it reads the server's /proc entry).

    python scripts/bench_milvus_scale.py [--n 1000000] [--kinds flat,ivf_pq] [--out build/bench_milvus_scale.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

from json_report import emit  # noqa: E402
from pymilvus import MilvusClient  # noqa: E402

from crossmodal.settings import IndexSettings  # noqa: E402
from crossmodal.storage.backends.milvus_backend import MilvusBackend  # noqa: E402
from crossmodal.storage.backends.milvus_entities import entity_schema  # noqa: E402
from crossmodal.storage.backends.milvus_index import METRIC, READ  # noqa: E402

DIM = 512
DETAILS = {"kind": "image", "start": None, "end": None, "text": None, "item_meta": {"label": "3", "source": "camera"},
           "uris": ["/home/someone/Pictures/2024/holiday/IMG_0000.jpg"], "uris_complete": True}
"""A typical image entity's details (see `bench_search_node.py` for the measured mean)."""


def clustered(n: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    which = rng.integers(0, len(centres), n)
    x = centres[which] + rng.normal(scale=0.6 / np.sqrt(DIM), size=(n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def rss_bytes(pid: int | None) -> int | None:
    if pid is None:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def measure(client: MilvusClient, kind: str, n: int, batch: int, queries: int, pid: int | None,
            data: Path | None) -> dict:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(1000, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    planner = MilvusBackend(None, None, {"uri": "http://planning-only", "prefix": "bench"})  # never connects
    _, params = planner.plan(n, DIM, IndexSettings(kind=kind))
    name = f"bench_{kind}"
    if client.has_collection(name):
        client.drop_collection(name)
    disk_before = folder_bytes(data) if data else None
    client.create_collection(name, schema=entity_schema(DIM), consistency_level="Strong")
    started = time.perf_counter()
    sample_ids, sample = [], []
    for start in range(0, n, batch):
        x = clustered(min(batch, n - start), rng, centres)
        if len(sample_ids) < 20_000:
            sample_ids += list(range(start, start + len(x)))
            sample.append(x)
        client.insert(name, [{"id": start + i, "vector": v, "item_id": start + i, "modality": "image",
                              "uri": DETAILS["uris"][0], "n_uris": 1, "mtime": 1.7e9, "meta": DETAILS["item_meta"],
                              "details": DETAILS} for i, v in enumerate(x)])
    client.flush(name)
    insert_s = time.perf_counter() - started
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_name="vector", index_type=params["index_type"], metric_type=METRIC,
                    params=params["build"])
    started = time.perf_counter()
    client.create_index(name, index, sync=True)
    build_s = time.perf_counter() - started
    rss_before = rss_bytes(pid)
    started = time.perf_counter()
    client.load_collection(name)
    load_s = time.perf_counter() - started
    time.sleep(2)
    rss_after = rss_bytes(pid)
    disk = folder_bytes(data) - disk_before if data else None
    base = np.concatenate(sample)[:20_000]
    qs = clustered(queries, rng, centres)
    _, exact = faiss.knn(qs, base, 10, metric=faiss.METRIC_INNER_PRODUCT)
    times, hits = [], 0
    search_params = dict(params["search"])
    for q, want in zip(qs, exact):
        t0 = time.perf_counter()
        found = client.search(name, data=[q], limit=10, filter=f"id < {len(base)}", output_fields=["id"],
                              search_params={"metric_type": METRIC, "params": search_params}, consistency_level=READ)
        times.append(time.perf_counter() - t0)
        hits += len({int(h["id"]) for h in found[0]} & {sample_ids[i] for i in want})
    client.drop_collection(name)
    million = 1_000_000 / n
    return {"kind": kind, "index": params, "n": n, "insert_s": round(insert_s, 1), "rows_per_s": round(n / insert_s),
            "build_s": round(build_s, 1), "load_s": round(load_s, 1),
            "disk_gb_per_million": None if disk is None else round(disk * million / 1e9, 3),
            "memory_gb_per_million": None if rss_before is None or rss_after is None
            else round((rss_after - rss_before) * million / 1e9, 3),
            "server_rss_gb_loaded": None if rss_after is None else round(rss_after / 1e9, 3),
            "search_p50_ms": round(1000 * statistics.median(times), 2),
            "recall@10_on_first_20k": round(hits / (10 * len(qs)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--kinds", default="flat,ivf_pq")
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--milvus-uri", default=None)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-milvus-", dir=args.work) as tmp:
        server, pid, data = None, None, None
        uri, token = args.milvus_uri, os.environ.get("CROSSMODAL_MILVUS_TOKEN", "")
        if uri is None:
            from support.milvus_server import start_milvus

            server = start_milvus(Path(tmp) / "milvus")
            uri, token, pid, data = server.uri, server.token, server.proc.pid, Path(tmp) / "milvus"
        try:
            client = MilvusClient(uri=uri, token=token)
            runs = [measure(client, kind, args.n, args.batch, args.queries, pid, data)
                    for kind in args.kinds.split(",")]
            version = client.get_server_version()
        finally:
            if server is not None:
                server.stop()
    emit({"server": version, "dim": DIM, "runs": runs, "load_average": os.getloadavg()}, args.out)


if __name__ == "__main__":
    main()
