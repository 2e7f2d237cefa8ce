"""Benchmark: end-to-end `crossmodal index` throughput against the bare batched model forward.

Builds a corpus of distinct files from the bundled demo corpus (each copy slightly altered so
content hashes differ), then, alternating in the same process, times
- baseline: the model's batched forward (`embed_images` / `embed_audio` / `embed_texts`) on
  the same inputs, already decoded in memory, with torch's own threads; and the same forward
  spread over the indexer's worker processes (one torch thread each), for comparison;
- a second baseline: the naive loop (decode a batch of files, embed it; no catalog, no index);
- end to end: `Engine.index` into a fresh collection (discovery, sniffing, hashing, decoding in
  worker processes, batched embedding, SQLite commits, index files).
Prints JSON with medians and the ratio end-to-end / baseline throughput. It also measures the
CPU work of the forward and of a whole run, each done serially (one torch thread, inline
decoding): what is not the forward has to hide beside it for the ratio to approach 1.

    python scripts/bench_ingest.py [--copies 8] [--repeats 3] [--workers N]

The default, 8 copies (5,120 files), is large enough that what is measured is the steady
rate, not the tenth of a second every run spends starting its workers; `--copies 2` shows
that start-up too.
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
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from PIL import Image

from crossmodal.aligner.registry import load_aligner
from crossmodal.core import Engine
from crossmodal.demo.showcase import CORPUS_DIR
from crossmodal.ingest.decode import decode_audio, decode_image, read_text
from crossmodal.ingest.discover import discover
from crossmodal.ingest.embed import embed_workers
from crossmodal.ingest.item_list import read_item_list
from crossmodal.ingest.workers import OrderedProcessMap, batched
from crossmodal.settings import Settings


def make_corpus(root: Path, copies: int, seed: int = 0) -> None:
    """``copies`` altered copies of every demo image and clip, and of the demo's notes as text files."""
    rng = np.random.default_rng(seed)
    for c in range(copies):
        out = root / f"copy{c}"
        (out / "images").mkdir(parents=True)
        (out / "audio").mkdir()
        (out / "text").mkdir()
        for src in sorted((CORPUS_DIR / "images").glob("*.png")):
            pixels = np.asarray(Image.open(src).convert("L")).copy()
            pixels[0, c % pixels.shape[1]] ^= 1
            Image.fromarray(pixels).save(out / "images" / src.name)
        for src in sorted((CORPUS_DIR / "audio").glob("*.wav")):
            wave, rate = sf.read(src, dtype="float32")
            sf.write(out / "audio" / src.name, wave + rng.normal(0, 1e-4, wave.shape).astype(np.float32), rate)
        notes = [item for item in read_item_list(CORPUS_DIR / "items.jsonl") if item.meta.get("source") == "note"]
        for i, note in enumerate(notes):
            (out / "text" / f"note_{i:02d}.txt").write_text(f"{note.text}\n\n(copy {c})\n")


def decode_then_forward(aligner, cands, batch: int) -> float:
    """The naive loop a script would write: decode each batch of files, then embed it."""
    start = time.perf_counter()
    for modality in ("image", "audio", "text"):
        chosen = [c for c in cands if c.modality == modality]
        for part in batched(chosen, batch):
            if modality == "image":
                aligner.embed_images([decode_image(c.media["image"]) for c in part])
            elif modality == "audio":
                aligner.embed_audio([decode_audio(c.media["audio"]) for c in part])
            else:
                aligner.embed_texts([read_text(c.text_path) for c in part])
    return time.perf_counter() - start


def bare_forward(aligner, images, clips, texts, batch: int) -> float:
    start = time.perf_counter()
    for part in batched(images, batch):
        aligner.embed_images(part)
    for part in batched(clips, batch):
        aligner.embed_audio(part)
    for part in batched(texts, batch):
        aligner.embed_texts(part)
    return time.perf_counter() - start


_FORKED: dict = {}


def _setup_bare(aligner, inputs: dict, batch: int) -> None:
    torch.set_num_threads(1)
    _FORKED.update(aligner=aligner, inputs=inputs, batch=batch)


def _bare_batches(keys: Sequence[tuple[str, int]]) -> list[int]:
    aligner, inputs, batch = _FORKED["aligner"], _FORKED["inputs"], _FORKED["batch"]
    embed = {"image": aligner.embed_images, "audio": aligner.embed_audio, "text": aligner.embed_texts}
    for modality, start in keys:
        embed[modality](inputs[modality][start:start + batch])
    return [len(keys)]


def bare_forward_processes(aligner, images, clips, texts, batch: int, workers: int) -> float:
    """The same forward with the indexer's parallelism: ``workers`` forked processes, one
    torch thread each, inputs already decoded in memory (inherited, not sent)."""
    inputs = {"image": images, "audio": clips, "text": texts}
    keys = [(m, start) for m, xs in inputs.items() for start in range(0, len(xs), batch)]
    pool = OrderedProcessMap(_bare_batches, keys, workers, lambda key: 0, setup=_setup_bare,
                             setup_args=(aligner, inputs, batch))
    start = time.perf_counter()
    done = sum(n for counts in pool.run(1) for n in counts)
    assert done == len(keys), (done, len(keys))
    return time.perf_counter() - start


def cpu_work(aligner, images, clips, texts, root: Path, settings: Settings) -> dict[str, float]:
    """CPU seconds of the model forward and of a whole run, each done serially (one torch
    thread, decoding inline): the least work a run needs, since running in parallel only adds
    overhead to it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.process_time()
        bare_forward(aligner, images, clips, texts, settings.ingest.batch_size)
        forward = time.process_time() - start
        inline = replace(settings, ingest=replace(settings.ingest, workers=0))
        start = time.process_time()
        with Engine.open(root / "cpu-work", create=True, settings=inline, aligner=aligner) as engine:
            engine.index([root / "corpus"], progress=False)
        e2e = time.process_time() - start
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(root / "cpu-work", ignore_errors=True)
    return {"model_forward": round(forward, 3), "end_to_end": round(e2e, 3),
            "everything_but_the_forward": round(e2e - forward, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="starter")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: the setting, auto)")
    args = parser.parse_args()
    settings = Settings()
    if args.workers is not None:
        settings = replace(settings, ingest=replace(settings.ingest, workers=args.workers))
    aligner = load_aligner(args.model)
    with tempfile.TemporaryDirectory(prefix="crossmodal-bench-") as tmp:
        root = Path(tmp)
        make_corpus(root / "corpus", args.copies)
        cands, skipped = discover([root / "corpus"])
        assert not skipped, skipped
        images = [decode_image(c.media["image"]) for c in cands if c.modality == "image"]
        clips = [decode_audio(c.media["audio"]) for c in cands if c.modality == "audio"]
        texts = [read_text(c.text_path) for c in cands if c.modality == "text"]
        n = len(images) + len(clips) + len(texts)
        bare_forward(aligner, images[:64], clips[:64], texts[:64], settings.ingest.batch_size)
        workers = embed_workers(settings.ingest, aligner)
        bare, bare_procs, naive, e2e = [], [], [], []
        for r in range(args.repeats):
            bare.append(bare_forward(aligner, images, clips, texts, settings.ingest.batch_size))
            if workers > 0:
                bare_procs.append(bare_forward_processes(aligner, images, clips, texts,
                                                         settings.ingest.batch_size, workers))
            naive.append(decode_then_forward(aligner, cands, settings.ingest.batch_size))
            target = root / f"coll{r}"
            start = time.perf_counter()
            with Engine.open(target, create=True, settings=settings, aligner=aligner) as engine:
                report = engine.index([root / "corpus"], progress=False)
            e2e.append(time.perf_counter() - start)
            assert report.added == n, (report.added, n)
            shutil.rmtree(target)
        works = [cpu_work(aligner, images, clips, texts, root, settings) for _ in range(args.repeats)]
    work = {key: round(statistics.median(w[key] for w in works), 3) for key in works[0]}
    bare_s, naive_s, e2e_s = statistics.median(bare), statistics.median(naive), statistics.median(e2e)
    result = {
        "items": n, "counts": {"image": len(images), "audio": len(clips), "text": len(texts)},
        "model": aligner.model_id, "torch_threads": torch.get_num_threads(),
        "workers": workers, "batch_size": settings.ingest.batch_size,
        "repeats": args.repeats,
        "bare_forward_s": bare, "decode_then_forward_s": naive, "end_to_end_s": e2e,
        "bare_forward_items_per_s_median": round(n / bare_s, 1),
        "end_to_end_items_per_s_median": round(n / e2e_s, 1),
        "ratio_end_to_end_over_bare": round(bare_s / e2e_s, 3),
        "decode_then_forward_items_per_s_median": round(n / naive_s, 1),
        "ratio_end_to_end_over_decode_then_forward": round(naive_s / e2e_s, 3),
        "target_ratio": 0.9,
        "bare_forward_in_workers_s": bare_procs,
        "cpu_work_s": work,
        "cores": os.cpu_count(),
    }
    if bare_procs:
        procs_s = statistics.median(bare_procs)
        result["bare_forward_in_workers_items_per_s_median"] = round(n / procs_s, 1)
        result["ratio_end_to_end_over_bare_forward_in_workers"] = round(procs_s / e2e_s, 3)
    result["target_met"] = result["ratio_end_to_end_over_bare"] >= result["target_ratio"]
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
