"""Benchmark: the bare image-tower forward of a model, fp32 against int8 (`[ingest] image_tower`),
laid out as the indexer runs it, so that indexing's own throughput can be set against it.

Decodes ``--count`` images of ``--images`` into memory first; then, alternating the modes in
each of ``--repeats`` rounds, embeds them all with `IndexEncoder` spread over ``--workers``
forked processes, one torch thread each (the indexer's layout; inputs inherited, not sent).
Preprocessing (resize, crop, normalise) is part of the forward here, as it is in indexing;
decoding, hashing and the catalog are not. Prints JSON: images/s per mode (median of
rounds), the int8/fp32 ratio, the one-off quantisation time and the cosine of int8 to fp32
vectors.

    python scripts/bench_image_forward.py --model open_clip:ViT-B-32//tmp/peers/model/vit_b32_random.pt \\
        --images /tmp/peers/images-only [--count 160] [--repeats 3] [--workers N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from json_report import emit
from PIL import Image

from crossmodal.aligner.index_encoder import IndexEncoder
from crossmodal.aligner.registry import load_aligner
from crossmodal.ingest.embed import embed_workers
from crossmodal.ingest.workers import OrderedProcessMap
from crossmodal.settings import Settings

_FORKED: dict = {}


def _setup(encoder: IndexEncoder, images: list) -> None:
    torch.set_num_threads(1)
    _FORKED.update(encoder=encoder, images=images)


def _embed_range(starts: Sequence[int]) -> list[np.ndarray]:
    encoder, images = _FORKED["encoder"], _FORKED["images"]
    return [encoder.embed_images(images[s:s + BATCH]) for s in starts]


BATCH = 16


def forward(encoder: IndexEncoder, images: list, workers: int) -> tuple[float, np.ndarray]:
    """Seconds to embed ``images`` over ``workers`` processes, and the vectors."""
    starts = list(range(0, len(images), BATCH))
    start = time.perf_counter()
    if workers == 0:
        out = [encoder.embed_images(images[s:s + BATCH]) for s in starts]
    else:
        pool = OrderedProcessMap(_embed_range, starts, workers, lambda s: np.zeros(0), setup=_setup,
                                 setup_args=(encoder, images))
        out = [v for part in pool.run(1) for v in part]
    return time.perf_counter() - start, np.concatenate(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model reference, e.g. open_clip:ViT-B-32/FILE")
    parser.add_argument("--images", required=True, help="folder of images (JPEG/PNG)")
    parser.add_argument("--count", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=-1, help="-1: what the indexer would use here")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    files = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if len(files) < args.count:
        parser.error(f"{args.images} has {len(files)} images, fewer than --count {args.count}")
    images = []
    for p in files[:args.count]:
        with Image.open(p) as im:
            images.append(im.convert("RGB"))
    aligner = load_aligner(args.model)
    settings = Settings().updated(ingest={"workers": args.workers})
    encoders = {"fp32": IndexEncoder(aligner, "fp32")}
    start = time.perf_counter()
    encoders["int8"] = IndexEncoder(aligner, "int8")
    quantise_s = time.perf_counter() - start
    workers = embed_workers(settings.ingest, encoders["fp32"])
    forward(encoders["int8"], images[:BATCH], workers)  # first touches of memory, both paths
    forward(encoders["fp32"], images[:BATCH], workers)
    seconds: dict[str, list[float]] = {m: [] for m in encoders}
    vectors: dict[str, np.ndarray] = {}
    for r in range(args.repeats):
        for mode in (("fp32", "int8") if r % 2 == 0 else ("int8", "fp32")):
            took, vectors[mode] = forward(encoders[mode], images, workers)
            seconds[mode].append(took)
            print(f"round {r + 1} {mode}: {len(images) / took:.2f} images/s", file=sys.stderr)
    rate = {m: round(len(images) / statistics.median(s), 2) for m, s in seconds.items()}
    cos = (vectors["fp32"] * vectors["int8"]).sum(axis=1)
    result = {"model": aligner.model_id, "ref": args.model, "images": len(images), "workers": workers,
              "torch_threads_per_worker": 1 if workers else torch.get_num_threads(), "repeats": args.repeats,
              "images_per_s_median": rate, "images_per_s_rounds": {m: [round(len(images) / x, 2) for x in s]
                                                                   for m, s in seconds.items()},
              "int8_over_fp32": round(rate["int8"] / rate["fp32"], 3), "quantise_s": round(quantise_s, 2),
              "cosine_int8_to_fp32": {"min": round(float(cos.min()), 6), "median": round(float(np.median(cos)), 6)}}
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
