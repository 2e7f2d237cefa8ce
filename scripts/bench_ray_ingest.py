"""Benchmark: indexing throughput with Ray workers (1, 2, 4) against the local process pool, on
the same files, in one run.

Builds ``--copies`` altered copies of the demo corpus (scripts/bench_ingest.py's `make_corpus`),
starts one local Ray with ``max(--ray-workers)`` CPUs (its start-up is timed separately: a
cluster is started once, not per run), then, alternating over ``--repeats`` rounds, indexes
the files into a fresh collection with each executor: the local pool (``[ingest] workers``,
default 2 on this 2-core machine) and Ray with each worker count. For each it reports the
median wall time of the whole run and its items per second, the steady rate (items per second
from the first batch back to the last: without actor start and index publishing), and both as
a ratio to the local pool. Load averages before and after say how busy the machine
was (it is shared).

    python scripts/bench_ray_ingest.py [--copies 4] [--repeats 3] [--ray-workers 1,2,4] [--local-workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ingest import make_corpus

from crossmodal.aligner.registry import load_aligner
from crossmodal.core import Engine
from crossmodal.settings import IngestSettings, Settings


def one_run(folder: Path, corpus: Path, aligner, ingest: IngestSettings) -> dict:
    """Index ``corpus`` into a fresh collection; wall and embedding-phase seconds, items."""
    shutil.rmtree(folder, ignore_errors=True)
    marks: list[tuple[float, int]] = []
    start = time.perf_counter()
    with Engine.open(folder, create=True, settings=Settings(ingest=ingest), aligner=aligner) as engine:
        report = engine.index([corpus], progress=False, on_batch=lambda n: marks.append((time.perf_counter(), n)))
    wall = time.perf_counter() - start
    steady = sum(n for _, n in marks[1:]) / (marks[-1][0] - marks[0][0]) if len(marks) > 1 else 0.0
    return {"wall_s": wall, "steady_items_per_s": steady, "items": report.added}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ray-workers", default="1,2,4")
    parser.add_argument("--local-workers", type=int, default=2)
    parser.add_argument("--model", default="starter")
    args = parser.parse_args(argv)
    ray_counts = [int(x) for x in args.ray_workers.split(",")]
    import ray

    load_before = os.getloadavg()
    aligner = load_aligner(args.model)
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        corpus = Path(tmp) / "corpus"
        make_corpus(corpus, args.copies)
        files = sum(1 for p in corpus.rglob("*") if p.is_file())
        t = time.perf_counter()
        ray.init(num_cpus=max(ray_counts), include_dashboard=False, log_to_driver=False, configure_logging=False)
        ray_start_s = time.perf_counter() - t
        configs = {"local": IngestSettings(workers=args.local_workers)}
        configs.update({f"ray-{n}": IngestSettings(executor="ray", workers=n) for n in ray_counts})
        runs: dict[str, list[dict]] = {name: [] for name in configs}
        try:
            for _ in range(args.repeats):
                for name, ingest in configs.items():
                    runs[name].append(one_run(Path(tmp) / name, corpus, aligner, ingest))
                    print(json.dumps({name: runs[name][-1]}), file=sys.stderr, flush=True)
        finally:
            ray.shutdown()
    out: dict = {"files": files, "model": args.model, "cpus": os.cpu_count(), "repeats": args.repeats,
                 "ray_start_s": round(ray_start_s, 1), "load_before": [round(x, 2) for x in load_before],
                 "load_after": [round(x, 2) for x in os.getloadavg()], "results": {}}
    base = None
    for name, rs in runs.items():
        wall = statistics.median(r["wall_s"] for r in rs)
        items = rs[0]["items"]
        row = {"items": items, "wall_s": round(wall, 2), "items_per_s": round(items / wall, 1),
               "steady_items_per_s": round(statistics.median(r["steady_items_per_s"] for r in rs), 1)}
        base = base or row
        row["ratio_to_local"] = round(row["items_per_s"] / base["items_per_s"], 3)
        row["steady_ratio_to_local"] = round(row["steady_items_per_s"] / base["steady_items_per_s"], 3)
        out["results"][name] = row
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
