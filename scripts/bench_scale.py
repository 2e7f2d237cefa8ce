"""Benchmark: what each index kind and the catalog cost per million vectors, for docs/scale.md.

For each FAISS index kind (the same kinds, and the same index types, Milvus builds: FLAT, HNSW,
IVF_FLAT, IVF_PQ), builds an index over ``--n`` synthetic embedding-like vectors (bench_index.py's
cluster mixture, 512-D like open_clip ViT-B-32) with the project's default parameters and
reports its build time, its serialized size (what the file takes on disk, and within a few
per cent what the index holds in memory) and both per million vectors. HNSW is built at
``--hnsw-n`` (its build is the slow one) and scales linearly. Then it stores ``--catalog-items``
synthetic items (one 512-D vector and one file each, as an image folder gives) in a real
catalog and reports the SQLite file's bytes per item. Prints one JSON object.

    python scripts/bench_scale.py [--n 1000000] [--hnsw-n 100000] [--catalog-items 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_index import Mixture

from crossmodal.items import NewItem
from crossmodal.storage.backends.faiss_index import (
    IndexParams,
    auto_params,
    build_index,
    index_kind,
    index_memory_bytes,
)
from crossmodal.storage.collection import Collection
from crossmodal.storage.manifest import ModelInfo

DIM = 512
MILLION = 1_000_000


def index_costs(kind: str, n: int, seed: int) -> dict:
    mixture = Mixture(1000, DIM, 2.5, seed)
    vectors, _ = mixture.sample(n, 0)
    ids = np.arange(n, dtype=np.int64)
    start = time.perf_counter()
    index = build_index(vectors, ids, kind, auto_params(kind, IndexParams()), seed=seed)
    build_s = time.perf_counter() - start
    size, built = index_memory_bytes(index), index_kind(index)
    del index, vectors
    return {"kind": built, "n": n, "build_s": round(build_s, 1), "bytes": size,
            "bytes_per_vector": round(size / n, 1), "gb_per_million": round(size / n * MILLION / 1e9, 3),
            "build_s_per_million": round(build_s / n * MILLION, 1)}


def catalog_costs(items: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        folder = Path(tmp) / "c"
        model = ModelInfo("synthetic", "0" * 64, "synthetic", DIM, "synthetic")
        coll = Collection.create(folder, model)
        start = time.perf_counter()
        step = 5000
        for low in range(0, items, step):
            with coll.catalog.transaction():
                for i in range(low, min(items, low + step)):
                    v = rng.normal(size=DIM).astype(np.float32)
                    v /= np.linalg.norm(v)
                    item = NewItem(f"{i:064x}", "image", ("image",), {"width": 224, "height": 224},
                                   vectors={"image": v})
                    uri = f"/data/photos/2026/{i // 1000:04d}/IMG_{i:08d}.jpg"
                    coll.catalog.link_file(uri, coll.catalog.add_item(item), 1, 1)
        insert_s = time.perf_counter() - start
        coll.close()
        size = sum(p.stat().st_size for p in folder.iterdir() if p.name.startswith("catalog"))
    return {"items": items, "bytes": size, "bytes_per_item": round(size / items, 1),
            "gb_per_million_items": round(size / items * MILLION / 1e9, 3),
            "insert_items_per_s": round(items / insert_s, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=MILLION)
    parser.add_argument("--hnsw-n", type=int, default=100_000)
    parser.add_argument("--kinds", default="flat,hnsw,ivf_flat,ivf_pq")
    parser.add_argument("--catalog-items", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out: dict = {"dim": DIM, "cpus": os.cpu_count(), "load_before": [round(x, 2) for x in os.getloadavg()],
                 "indexes": {}}
    out["catalog"] = catalog_costs(args.catalog_items, args.seed)
    for kind in args.kinds.split(","):
        out["indexes"][kind] = index_costs(kind, args.hnsw_n if kind == "hnsw" else args.n, args.seed)
        print(json.dumps({kind: out["indexes"][kind]}), file=sys.stderr, flush=True)
    out["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
