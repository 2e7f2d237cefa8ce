"""Measure how far the query text paths (`aligner.fast_text`: ``fp32`` trimmed, ``int8``) move
results from the model's own forward (``full``: what indexing computes), in two places.

1. ``--list`` (the starter's official held-out split, ``scripts/prepare_digits_data.py``'s
   ``eval.jsonl``; ``--model``, default starter): recall@1/5/10 and mAP of every direction, as
   `crossmodal eval` computes them, with the text vectors from each path, and the change
   against ``full`` in points (1 point = 0.01). Two ways:

   - ``as_served``: only text *queries* take the path (indexing keeps the model's vectors, so
     a text gallery stays ``full``): the directions text->image, text->audio, text->text move;
   - ``everywhere``: text galleries take it too (what indexing with it would give): every
     direction with text in it moves.

   Every query text is embedded on its own, as a search does. The bound of issue 20 is a change
   of at most 0.5 point in recall@1 and mAP in every direction (``bound_met``).
2. ``--collection`` (e.g. the ViT-B-32 collection of the peer benchmark,
   ``/tmp/peers/cm-idx/perf``): the peer benchmark's query texts (``--queries``, default 110:
   its 10 warm-up and 100 timed), each searched in the collection's image index (k 10, no
   collapsing of copies) with the vector of each path; the top-10 overlap with ``full`` (mean,
   min), how often the first result is the same, and the cosine to ``full`` (min, median).

Prints one JSON object (and writes it to ``--out`` when given).

    python scripts/measure_text_tower.py --list build/digits/eval.jsonl
    python scripts/measure_text_tower.py --collection /tmp/peers/cm-idx/perf
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from json_report import emit

from crossmodal.aligner.fast_text import QueryTextEncoder
from crossmodal.aligner.registry import load_aligner

QUERIES = ["a red circle", "a blue square on a noisy background", "green triangle", "a yellow cross",
           "purple stripes", "an orange circle on white", "black square", "a white triangle on red",
           "a photo of a dog", "two people walking on a beach at sunset"]
"""../shared/peers/query_clip_retrieval.py's texts; query i is QUERIES[i % 10], plus " i" from the 11th on."""
BOUND_POINTS = 0.5


def text_paths(aligner, texts: list[str]) -> dict[str, np.ndarray]:
    """Each text embedded on its own through every path, as a query is."""
    encoders = {mode: QueryTextEncoder(aligner, mode) for mode in ("fp32", "int8")}
    out = {"full": aligner.embed_texts(texts)}
    for mode, encoder in encoders.items():
        out[mode] = np.concatenate([encoder.embed_now([t]) for t in texts])
    return out


def cosine_summary(full: np.ndarray, other: np.ndarray) -> dict:
    cos = (full * other).sum(axis=1)
    return {"cosine_min": round(float(cos.min()), 6), "cosine_median": round(float(np.median(cos)), 6)}


def official_split(list_path: str, model: str) -> dict:
    from crossmodal.evaluation.dataset import load_dataset
    from crossmodal.evaluation.evaluate import embed_dataset
    from crossmodal.evaluation.metrics import ALL_DIRECTIONS, ranking_metrics
    from crossmodal.ingest.item_list import read_item_list

    aligner = load_aligner(model)
    data = load_dataset(read_item_list(list_path), aligner, progress=False)
    vectors = {m: embed_dataset(aligner, d) for m, d in data.modalities.items()}
    labels = {m: d.labels.numpy() for m, d in data.modalities.items()}
    texts = list(data.modalities["text"].inputs)
    paths = text_paths(aligner, texts)

    def metrics(query_text: np.ndarray, gallery_text: np.ndarray) -> dict:
        out = {}
        for direction in ALL_DIRECTIONS:
            q, g = direction.split("->")
            if q not in vectors or g not in vectors:
                continue
            qv = query_text if q == "text" else vectors[q]
            gv = gallery_text if g == "text" else vectors[g]
            out[direction] = ranking_metrics(qv, labels[q], gv, labels[g], same_set=q == g)
        return out

    reference = metrics(paths["full"], paths["full"])
    result: dict = {"model": aligner.model_id, "list": list_path, "texts": len(texts),
                    "full": {d: {k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()}
                             for d, m in reference.items()}}
    for mode in ("fp32", "int8"):
        row: dict = {**cosine_summary(paths["full"], paths[mode])}
        worst = 0.0
        for way, gallery in (("as_served", paths["full"]), ("everywhere", paths[mode])):
            got = metrics(paths[mode], gallery)
            deltas = {d: {k: round(100 * (got[d][k] - reference[d][k]), 3) + 0.0
                          for k in ("recall@1", "recall@5", "recall@10", "mAP")} for d in got}
            worst = max(worst, max(abs(v[k]) for v in deltas.values() for k in ("recall@1", "mAP")))
            row[way] = {"change_points": deltas,
                        "metrics": {d: {k: round(got[d][k], 4) for k in ("recall@1", "mAP")} for d in got}}
        row["largest_change_points_r1_map"] = round(worst, 3)
        row["bound_points"] = BOUND_POINTS
        row["bound_met"] = worst <= BOUND_POINTS
        result[mode] = row
    return result


def collection_overlap(folder: str, n: int) -> dict:
    from crossmodal.core import Engine
    from crossmodal.search.query import Query, QueryPart
    from crossmodal.settings import Settings

    texts = [QUERIES[i % len(QUERIES)] + ("" if i < len(QUERIES) else f" {i}") for i in range(n)]
    with Engine.open(folder, settings=Settings()) as engine:
        aligner = engine.aligner
        paths = text_paths(aligner, texts)

        def top(vector: np.ndarray) -> list[int]:
            query = Query(parts=(QueryPart("text", vector=vector),), targets=("image",), k=10, collapse=False)
            return [r.id for r in engine.search(query).results]

        tops = {mode: [top(v) for v in vectors] for mode, vectors in paths.items()}
    result: dict = {"collection": folder, "model": aligner.model_id, "queries": n}
    for mode in ("fp32", "int8"):
        overlap = [len(set(a) & set(b)) / 10 for a, b in zip(tops["full"], tops[mode], strict=True)]
        same_order = [a == b for a, b in zip(tops["full"], tops[mode], strict=True)]
        first = [a[0] == b[0] for a, b in zip(tops["full"], tops[mode], strict=True)]
        result[mode] = {"top10_overlap_mean": round(float(np.mean(overlap)), 4),
                        "top10_overlap_min": round(float(np.min(overlap)), 2),
                        "top1_same": round(float(np.mean(first)), 4),
                        "top10_same_order": round(float(np.mean(same_order)), 4),
                        **cosine_summary(paths["full"], paths[mode])}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", help="labelled item list of the held-out split (eval.jsonl)")
    parser.add_argument("--model", default="starter", help="model for --list")
    parser.add_argument("--collection", help="a collection to measure the top-10 overlap on")
    parser.add_argument("--queries", type=int, default=110)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    if not args.list and not args.collection:
        parser.error("give --list, --collection or both")
    result: dict = {}
    if args.list:
        result["official_split"] = official_split(args.list, args.model)
    if args.collection:
        result["collection"] = collection_overlap(args.collection, args.queries)
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
