"""Measure the per-modality weights of an item's fused vector (issue 21, point 1): which share α
of the media vector (image or audio) against 1 − α of its caption serves what the fused vector is
used for, to set the default of ``[index] fusion_weights``.

Multimodal items are made from the starter's held-out split (``--list``, the ``eval.jsonl`` that
``scripts/prepare_digits_data.py`` writes): ``--images`` images per digit and every held-out audio
clip, each paired with a caption of the same digit. Each seed splits every digit's held-out
phrasings in two halves, captions and text queries, and draws the pairing anew.

The vectors are the ones indexing stores: one pair-line item list (every image and clip with a
caption, and every phrasing as a text item) is indexed once through a real `Engine` with
``fusion_weights`` = {image: 0.5, audio: 0.5, text: 0.5}, and the image, audio-window and caption
vectors are read back from the catalog; ``fused_matches_catalog`` checks that ingest's `_fuse` on
those parts gives the fused vectors the catalog stored. Each α then re-fuses them with
{image: α, audio: α, text: 1 − α} (so α 0.5 is equal weights) and measures, by digit label:

* ``item_to_item``: every fused item against the others ("more like this"): R@1 and mAP, and
  mAP restricted to the other modality's items (image item -> audio items and back);
* ``preference``: simulated users who liked ``--likes`` items of one digit; precision@10 of their
  normalised sum u = Σ cᵢ over the rest of the fused gallery (content recommendation);
* ``text_search``, ``image_search``, ``audio_search``: held-out phrasings not used as captions,
  and each image's or clip's own vector (its item left out), against the fused gallery.

Captions are not always right: each ``--noise`` share (default 0, 0.2, 0.4) gets its own table,
in which that share of the items carries a caption naming another digit (the item's label stays
its media's digit). ``best_alpha`` per table maximises ``recommend_score``, the mean of
item-to-item mAP and preference precision@10. Figures are means over ``--seeds`` with the
standard deviation across them. Prints one JSON object (and writes it to ``--out`` when given).

    python scripts/measure_fusion.py --list build/digits/eval.jsonl --out build/fusion.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from crossmodal.aligner.registry import load_aligner
from crossmodal.core import Engine
from crossmodal.ingest.embed import _fuse
from crossmodal.settings import Settings

ALPHAS = [round(0.1 * i, 1) for i in range(11)]
INDEX_WEIGHTS = {"image": 0.5, "audio": 0.5, "text": 0.5}


def read_split(path: Path, images_per_digit: int, rng: np.random.Generator) -> tuple[list, list, dict]:
    """The held-out images (a sample per digit), audio clips and phrasings by digit."""
    images, audio, texts = defaultdict(list), [], defaultdict(list)
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        label = str(row["label"])
        if row["modality"] == "text":
            texts[label].append(row["text"])
            continue
        media = Path(row["path"])
        media = media if media.is_absolute() else (path.parent / media).resolve()
        (images[label] if row["modality"] == "image" else audio).append((str(media), label))
    chosen = []
    for label in sorted(images):
        picks = rng.choice(len(images[label]), size=min(images_per_digit, len(images[label])), replace=False)
        chosen += [(images[label][i][0], label) for i in sorted(picks)]
    return chosen, audio, dict(texts)


def index_vectors(media: list[tuple[str, str, str]], texts: dict[str, list[str]], folder: Path,
                  model) -> tuple[dict, dict, dict, float]:
    """Index every media file with a caption and every phrasing on its own; return each media
    file's own vector, each phrasing's vector, each paired item's stored fused vector and the
    largest gap between a stored fused vector and `_fuse` of its stored parts."""
    lines = []
    for i, (path, label, kind) in enumerate(media):
        caption = texts[label][i % len(texts[label])]
        lines.append({kind: path, "text": caption, "label": label, "meta": {"key": f"m{i}"}})
    phrasings = [(label, t) for label in sorted(texts) for t in texts[label]]
    lines += [{"modality": "text", "text": t, "label": label, "meta": {"key": f"t{j}"}}
              for j, (label, t) in enumerate(phrasings)]
    item_list = folder / "items.jsonl"
    item_list.write_text("".join(json.dumps(row) + "\n" for row in lines))
    settings = Settings().updated(index={"fusion_weights": INDEX_WEIGHTS}, ingest={"workers": 0})
    with Engine.open(folder / "collection", create=True, settings=settings, aligner=model) as engine:
        report = engine.index([item_list], progress=False)
        if report.skipped:
            raise SystemExit(f"indexing skipped {len(report.skipped)} items, first: {report.skipped[0]}")
        catalog = engine.collection.catalog
        keys = {item: f["meta"]["key"] for item, f in catalog.filter_fields().items()}
        ids = catalog.vectors_of_items(list(keys))
        hits, vecs = catalog.describe(ids), catalog.vectors_by_id(ids)
    parts: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for vid, hit in hits.items():
        parts[keys[hit.item_id]][hit.kind].append(vecs[vid])
    media_vec, fused, gap = {}, {}, 0.0
    for i, (_, _, kind) in enumerate(media):
        own = parts[f"m{i}"]
        vec = np.mean(own[kind], axis=0)
        media_vec[i] = (vec / np.linalg.norm(vec)).astype(np.float32)
        text = np.mean(own["text"], axis=0)
        rebuilt = _fuse({kind: media_vec[i], "text": text / np.linalg.norm(text)}, INDEX_WEIGHTS)
        fused[i] = own["fused"][0]
        gap = max(gap, float(np.abs(rebuilt - fused[i]).max()))
    text_vec = {(label, t): parts[f"t{j}"]["text"][0] for j, (label, t) in enumerate(phrasings)}
    return media_vec, text_vec, fused, gap


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    order = np.argsort(-scores, kind="stable")
    rel = relevant[order]
    if not rel.any():
        return 0.0
    hits = np.cumsum(rel)
    return float((hits[rel] / (np.flatnonzero(rel) + 1)).mean())


def retrieval(queries: np.ndarray, q_labels: np.ndarray, gallery: np.ndarray, g_labels: np.ndarray,
              leave_out: np.ndarray | None = None, restrict: np.ndarray | None = None) -> dict[str, float]:
    """R@1 and mAP of each query over the gallery by label; ``leave_out[q]`` is a gallery row
    query q may not find (itself), ``restrict[q]`` a mask of the rows it is ranked among."""
    scores = queries @ gallery.T
    r1, aps = [], []
    for q in range(len(queries)):
        mask = np.ones(len(gallery), dtype=bool) if restrict is None else restrict[q].copy()
        if leave_out is not None:
            mask[leave_out[q]] = False
        s, rel = scores[q][mask], g_labels[mask] == q_labels[q]
        r1.append(float(rel[int(np.argmax(s))]))
        aps.append(average_precision(s, rel))
    return {"r1": float(np.mean(r1)), "map": float(np.mean(aps))}


def preference(gallery: np.ndarray, labels: np.ndarray, likes: int, users: int,
               rng: np.random.Generator) -> float:
    """Precision@10 of users who liked ``likes`` items of one digit, scored by u = Σ cᵢ."""
    precision = []
    for digit in np.unique(labels):
        pool = np.flatnonzero(labels == digit)
        for _ in range(users):
            liked = rng.choice(pool, size=likes, replace=False)
            u = gallery[liked].sum(axis=0)
            scores = gallery @ (u / np.linalg.norm(u))
            scores[liked] = -np.inf
            top = np.argsort(-scores, kind="stable")[:10]
            precision.append(float((labels[top] == digit).mean()))
    return float(np.mean(precision))


def one_seed(seed: int, noise: float, media: list, media_vec: dict, texts: dict, text_vec: dict,
             args) -> dict[float, dict]:
    """Every α on one pairing: a ``noise`` share of the items get a caption of another digit."""
    rng = np.random.default_rng(seed)
    captions, queries = {}, []
    for label in sorted(texts):
        order = rng.permutation(len(texts[label]))
        half = len(order) // 2 + len(order) % 2
        captions[label] = [texts[label][i] for i in order[:half]]
        queries += [(label, texts[label][i]) for i in order[half:]]
    kinds = np.array([kind for _, _, kind in media])
    labels = np.array([label for _, label, _ in media])
    own = np.stack([media_vec[i] for i in range(len(media))])
    digits = sorted(texts)
    said = [label if rng.random() >= noise else str(rng.choice([d for d in digits if d != label]))
            for _, label, _ in media]
    caption = np.stack([text_vec[(label, captions[label][rng.integers(len(captions[label]))])] for label in said])
    caption /= np.linalg.norm(caption, axis=1, keepdims=True)
    q_text = np.stack([text_vec[q] for q in queries])
    q_labels = np.array([label for label, _ in queries])
    every = np.arange(len(media))
    other = kinds[None, :] != kinds[:, None]
    out = {}
    for alpha in ALPHAS:
        weights = {"image": alpha, "audio": alpha, "text": 1.0 - alpha}
        fused = np.stack([_fuse({kinds[i]: own[i], "text": caption[i]}, weights) for i in every])
        row = {"item_to_item": retrieval(fused, labels, fused, labels, leave_out=every),
               "cross_modal_item_to_item": retrieval(fused, labels, fused, labels, restrict=other),
               "preference_p10": preference(fused, labels, args.likes, args.users, np.random.default_rng(seed)),
               "text_search": retrieval(q_text, q_labels, fused, labels)}
        for kind in ("image", "audio"):
            sel = np.flatnonzero(kinds == kind)
            row[f"{kind}_search"] = retrieval(own[sel], labels[sel], fused, labels, leave_out=sel)
        out[alpha] = row
    return out


def flatten(row: dict) -> dict[str, float]:
    flat = {}
    for key, value in row.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", type=Path, default=Path("build/digits/eval.jsonl"),
                        help="the held-out item list (scripts/prepare_digits_data.py)")
    parser.add_argument("--model", default="starter")
    parser.add_argument("--images", type=int, default=60, help="held-out images per digit")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--likes", type=int, default=3)
    parser.add_argument("--users", type=int, default=20, help="simulated users per digit and seed")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.2, 0.4],
                        help="shares of items whose caption names another digit (one table each)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if not args.list.is_file():
        parser.error(f"--list {args.list}: no such item list (run scripts/prepare_digits_data.py)")
    torch.set_num_threads(args.threads)
    images, audio, texts = read_split(args.list, args.images, np.random.default_rng(0))
    media = [(p, label, "image") for p, label in images] + [(p, label, "audio") for p, label in audio]
    model = load_aligner(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        media_vec, text_vec, _, gap = index_vectors(media, texts, Path(tmp), model)
    tables, best = {}, {}
    for noise in args.noise:
        runs = [one_seed(seed, noise, media, media_vec, texts, text_vec, args) for seed in range(args.seeds)]
        table = []
        for alpha in ALPHAS:
            per_seed = [flatten(run[alpha]) for run in runs]
            score = [(s["item_to_item.map"] + s["preference_p10"]) / 2 for s in per_seed]
            row = {"alpha": alpha}
            for key, values in [(k, [s[k] for s in per_seed]) for k in per_seed[0]] + [("recommend_score", score)]:
                row[key] = round(float(np.mean(values)), 4)
                row[f"{key}.sd"] = round(float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, 4)
            table.append(row)
        tables[str(noise)] = table
        best[str(noise)] = max(table, key=lambda r: r["recommend_score"])["alpha"]
    result = {
        "model": args.model, "list": str(args.list), "images": len(images), "audio": len(audio),
        "phrasings": sum(len(v) for v in texts.values()), "seeds": args.seeds, "likes": args.likes,
        "users_per_digit": args.users, "index_weights": INDEX_WEIGHTS,
        "fused_matches_catalog": gap < 1e-5, "fused_max_gap": gap,
        "criterion": "recommend_score = mean of item_to_item.map and preference_p10 (per seed)",
        "best_alpha": best, "tables": tables,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
