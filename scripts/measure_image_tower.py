"""Measure how far the int8 image tower of indexing (`aligner.index_encoder`, ``[ingest]
image_tower``) moves results from the model's own float forward, in two places.

1. ``--list`` (the starter's official held-out split, ``scripts/prepare_digits_data.py``'s
   ``eval.jsonl``; ``--model``, default starter): recall@1/5/10 and mAP of every direction, as
   `crossmodal eval` computes them, with image vectors from the float tower and from the int8
   one (forced: ``auto`` keeps the starter's CNN in fp32), and the change in points
   (1 point = 0.01). Every image is embedded on its own, as indexing does in int8. Issue 20's
   bound is at most 0.5 point in recall@1 and mAP in every direction (``bound_met``).
2. ``--collection`` with ``--images`` (e.g. the peer benchmark's ViT-B-32 collection,
   ``/tmp/peers/cm-idx/perf``, and its folder ``/tmp/peers/images-only``): the vectors the
   collection stored against the same files embedded now in fp32 (``--limit`` of them); the
   peer benchmark's query texts (``--queries``, default 110) search both galleries (k 10) and
   the top-10 overlap, the share of identical first results, and the cosines are reported
   (``stored_is_fp32`` says whether the collection was built in fp32 after all), with what
   explains an overlap below 1: how far apart the float top 10's scores are (median of first
   minus tenth) against how far int8 moves a score (median and p99).

Prints one JSON object (and writes it to ``--out`` when given).

    python scripts/measure_image_tower.py --list build/digits/eval.jsonl
    python scripts/measure_image_tower.py --collection /tmp/peers/cm-idx/perf --images /tmp/peers/images-only
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from json_report import emit

from crossmodal.aligner.index_encoder import IndexEncoder, image_mode
from crossmodal.aligner.registry import load_aligner

BOUND_POINTS = 0.5
QUERIES = ["a red circle", "a blue square on a noisy background", "green triangle", "a yellow cross",
           "purple stripes", "an orange circle on white", "black square", "a white triangle on red",
           "a photo of a dog", "two people walking on a beach at sunset"]
"""../shared/peers/query_clip_retrieval.py's texts; query i is QUERIES[i % 10], plus " i" from the 11th on."""


def official_split(list_path: str, model: str) -> dict:
    from crossmodal.evaluation.dataset import image_batch, load_dataset
    from crossmodal.evaluation.evaluate import embed_dataset
    from crossmodal.evaluation.metrics import ALL_DIRECTIONS, ranking_metrics
    from crossmodal.ingest.item_list import read_item_list

    aligner = load_aligner(model)
    data = load_dataset(read_item_list(list_path), aligner, progress=False)
    vectors = {m: embed_dataset(aligner, d) for m, d in data.modalities.items()}
    labels = {m: d.labels.numpy() for m, d in data.modalities.items()}
    tower = IndexEncoder(aligner, "int8").image_tower
    images = data.modalities["image"]
    with torch.inference_mode():
        int8 = np.concatenate([tower(image_batch(aligner, images, np.array([i])).to(aligner.device), normalize=True)
                               .float().cpu().numpy() for i in range(len(images))])

    def metrics(image_vectors: np.ndarray) -> dict:
        out = {}
        for direction in ALL_DIRECTIONS:
            q, g = direction.split("->")
            if "image" not in (q, g) or q not in vectors or g not in vectors:
                continue
            qv = image_vectors if q == "image" else vectors[q]
            gv = image_vectors if g == "image" else vectors[g]
            out[direction] = ranking_metrics(qv, labels[q], gv, labels[g], same_set=q == g)
        return out

    reference, got = metrics(vectors["image"]), metrics(int8)
    deltas = {d: {k: round(100 * (got[d][k] - reference[d][k]), 3) + 0.0
                  for k in ("recall@1", "recall@5", "recall@10", "mAP")} for d in got}
    worst = max(abs(v[k]) for v in deltas.values() for k in ("recall@1", "mAP"))
    cos = (vectors["image"] * int8).sum(axis=1)
    return {"model": aligner.model_id, "list": list_path, "images": len(images),
            "auto_would_use": image_mode(aligner, "auto"),
            "fp32": {d: {k: round(m[k], 4) for k in ("recall@1", "mAP")} for d, m in reference.items()},
            "int8": {d: {k: round(m[k], 4) for k in ("recall@1", "mAP")} for d, m in got.items()},
            "change_points": deltas, "largest_change_points_r1_map": round(worst, 3),
            "bound_points": BOUND_POINTS, "bound_met": worst <= BOUND_POINTS,
            "cosine_min": round(float(cos.min()), 6), "cosine_median": round(float(np.median(cos)), 6)}


def collection_overlap(folder: str, images_dir: str, limit: int, n: int) -> dict:
    from PIL import Image

    from crossmodal.core import Engine
    from crossmodal.settings import Settings

    with Engine.open(folder, settings=Settings()) as engine:
        aligner = engine.aligner
        catalog = engine.collection.catalog
        states = catalog.file_states()
        by_name = {Path(uri).name: s.item_id for uri, s in states.items()}
        names = sorted(n for n in by_name if (Path(images_dir) / n).is_file())[:limit]
        stored_of = catalog.item_vectors([by_name[x] for x in names])
        stored = np.stack([stored_of[by_name[x]] for x in names])
    pictures = []
    for x in names:
        with Image.open(Path(images_dir) / x) as im:
            pictures.append(im.convert("RGB"))
    fp32 = np.concatenate([aligner.embed_images(pictures[i:i + 32]) for i in range(0, len(pictures), 32)])
    texts = [QUERIES[i % len(QUERIES)] + ("" if i < len(QUERIES) else f" {i}") for i in range(n)]
    queries = aligner.embed_texts(texts)
    top_stored = np.argsort(-(queries @ stored.T), axis=1)[:, :10]
    top_fp32 = np.argsort(-(queries @ fp32.T), axis=1)[:, :10]
    overlap = [len(set(a) & set(b)) / 10 for a, b in zip(top_stored, top_fp32, strict=True)]
    cos = (stored * fp32).sum(axis=1)
    scores = queries @ fp32.T
    ranked = -np.sort(-scores, axis=1)
    spread = ranked[:, 0] - ranked[:, 9]  # how far apart the float top 10 are
    moved = np.abs(queries @ stored.T - scores)  # how far int8 moves a score
    return {"collection": folder, "model": aligner.model_id, "images": len(names), "queries": n,
            "auto_would_use": image_mode(aligner, "auto"),
            "stored_is_fp32": bool(np.abs(stored - fp32).max() < 1e-5),
            "top10_overlap_mean": round(float(np.mean(overlap)), 4),
            "top10_overlap_min": round(float(np.min(overlap)), 2),
            "top1_same": round(float(np.mean(top_stored[:, 0] == top_fp32[:, 0])), 4),
            "cosine_min": round(float(cos.min()), 6), "cosine_median": round(float(np.median(cos)), 6),
            "fp32_top10_score_spread_median": float(f"{np.median(spread):.3g}"),
            "int8_score_change_median": float(f"{np.median(moved):.3g}"),
            "int8_score_change_p99": float(f"{np.percentile(moved, 99):.3g}")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", help="labelled item list of the held-out split (eval.jsonl)")
    parser.add_argument("--model", default="starter", help="model for --list")
    parser.add_argument("--collection", help="a collection built from --images, to compare its stored vectors")
    parser.add_argument("--images", help="the folder --collection was built from")
    parser.add_argument("--limit", type=int, default=2000, help="at most this many of its images")
    parser.add_argument("--queries", type=int, default=110)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    if not args.list and not args.collection:
        parser.error("give --list, --collection or both")
    if args.collection and not args.images:
        parser.error("--collection needs --images, the folder it was built from")
    result: dict = {}
    if args.list:
        result["official_split"] = official_split(args.list, args.model)
    if args.collection:
        result["collection"] = collection_overlap(args.collection, args.images, args.limit, args.queries)
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
