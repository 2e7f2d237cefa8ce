"""Measure "for you" lists like a recommender (issue 21, point 6): a simulated population of
users over a labelled collection, K-fold cross-validation over each user's likes, and
precision, recall, F1, nDCG@k and coverage of the popular, content, collaborative and hybrid
methods, mean and spread across folds. Also the lift of personalised search over plain search
on the held-out likes. Prints JSON (and writes it to ``--out``); ``--plots`` draws a
precision-recall curve (k = 1..20) and F1@10 by history length (needs matplotlib:
``pip install -e '.[eval]'``).

Why simulated: the demo corpus has no real users. The simulation is fixed before looking at any
result, so that what it shows is not tuned to favour one method:

- ``CLUSTERS`` taste clusters. A cluster has a sparse label taste (a Dirichlet with
  concentration 0.3 over the labels: a few favourite digits) and a preference over modalities,
  and a taste for particular items inside a label (a log-normal affinity per cluster and item:
  one handwriting, one voice), which only co-occurrence can reveal: content vectors see
  labels and modalities, not that. Items also have a shared appeal (log-normal), the signal
  popularity lives on.
- A user of a cluster has their own label and modality tastes drawn around the cluster's, a
  history length drawn log-normally (median 15 likes), likes drawn by appeal = label taste x
  modality preference x item appeal x cluster affinity (one in ten uniformly at random: noise),
  half as many clicks drawn the same way with more noise, and a quarter as many dislikes on
  their two least-liked labels.

Each fold: every simulated user's feedback is written through `Engine.feedback` into a
temporary copy of the collection (the likes of the other folds, all clicks and dislikes), then
`Engine.recommend(user, k, include_rated=False, method=...)` lists are judged against the
held-out likes. The engine fits the collaborative model on exactly that feedback, as it would
in use. Personalised search: the query "the digit <favourite label>" with and without ``user``.

    .venv/bin/python scripts/eval_recommendations.py --users 60 --folds 5 --seed 0 --plots docs/
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal.core import Engine, Query, QueryPart
from crossmodal.demo.showcase import CORPUS_LIST
from crossmodal.evaluation.recommendation_metrics import f1_at, mean_metrics
from crossmodal.settings import Settings

METHODS = ("popular", "content", "collaborative", "hybrid")
CLUSTERS = 4
K = 10
K_CURVE = 20
HISTORY_BINS = ((1, 5), (6, 10), (11, 20), (21, 40), (41, 10**6))


@dataclass(frozen=True)
class CatalogueItem:
    """What the simulation knows of an item: its id, label and modality."""

    id: int
    label: str
    modality: str


@dataclass
class SimUser:
    """A simulated user: their cluster, latent tastes and the feedback drawn from them."""

    name: str
    cluster: int
    taste: dict[str, float]
    modality_taste: dict[str, float]
    likes: list[int]
    clicks: list[int] = field(default_factory=list)
    dislikes: list[int] = field(default_factory=list)

    @property
    def favourite(self) -> str:
        return max(self.taste, key=lambda label: self.taste[label])


def catalogue(engine: Engine) -> list[CatalogueItem]:
    """Every item with a ``label`` (items without one cannot be liked by taste, and are left out)."""
    fields = engine.collection.catalog.filter_fields()
    out = []
    for item, f in sorted(fields.items()):
        label = (f.get("meta") or {}).get("label")
        if label is not None:
            out.append(CatalogueItem(int(item), str(label), str(f["modality"])))
    return out


def _draw(rng: np.random.Generator, weights: np.ndarray, n: int, noise: float, exclude: set[int]) -> list[int]:
    """``n`` distinct indices: each by ``weights`` or, with probability ``noise``, uniformly."""
    chosen: list[int] = []
    taken = np.zeros(len(weights), dtype=bool)
    taken[list(exclude)] = True
    for _ in range(n):
        free = ~taken
        if not free.any():
            break
        w = np.where(free, weights, 0.0)
        if rng.random() < noise or w.sum() <= 0:
            w = free.astype(np.float64)
        pick = int(rng.choice(len(w), p=w / w.sum()))
        chosen.append(pick)
        taken[pick] = True
    return chosen


def simulate(items: Sequence[CatalogueItem], n_users: int, seed: int, min_likes: int) -> list[SimUser]:
    """A population of ``n_users`` in `CLUSTERS` clusters (see the module docstring)."""
    rng = np.random.default_rng(seed)
    labels = sorted({i.label for i in items})
    modalities = sorted({i.modality for i in items})
    label_of = np.array([labels.index(i.label) for i in items])
    modality_of = np.array([modalities.index(i.modality) for i in items])
    appeal = rng.lognormal(0.0, 0.5, len(items))
    protos = [(rng.dirichlet(np.full(len(labels), 0.3)), rng.dirichlet(np.ones(len(modalities))),
               rng.lognormal(0.0, 1.0, len(items))) for _ in range(CLUSTERS)]
    users = []
    for n in range(n_users):
        cluster = n % CLUSTERS
        label_proto, modality_proto, affinity = protos[cluster]
        taste = rng.dirichlet(10.0 * label_proto + 0.1)
        modality_taste = rng.dirichlet(10.0 * modality_proto + 0.5)
        weight = taste[label_of] * modality_taste[modality_of] * appeal * affinity
        n_likes = int(np.clip(round(rng.lognormal(np.log(15.0), 0.6)), min_likes, 60))
        likes = _draw(rng, weight, n_likes, 0.1, set())
        clicks = _draw(rng, weight, round(0.5 * n_likes), 0.3, set(likes))
        worst = np.argsort(taste + rng.random(len(labels)) * 1e-9)[:2]
        disliked = np.isin(label_of, worst).astype(np.float64)
        dislikes = _draw(rng, disliked, round(0.25 * n_likes), 0.1, set(likes) | set(clicks))
        users.append(SimUser(f"sim{n:03d}", cluster, {lab: float(t) for lab, t in zip(labels, taste)},
                             {m: float(t) for m, t in zip(modalities, modality_taste)},
                             [items[i].id for i in likes], [items[i].id for i in clicks],
                             [items[i].id for i in dislikes]))
    return users


def split_folds(users: Sequence[SimUser], folds: int, seed: int) -> dict[str, list[list[int]]]:
    """Each user's likes shuffled and cut into ``folds`` parts of near-equal size."""
    rng = np.random.default_rng(seed + 1)
    return {u.name: [list(map(int, part)) for part in np.array_split(rng.permutation(u.likes), folds)]
            for u in users}


def write_feedback(engine: Engine, users: Sequence[SimUser], train_likes: dict[str, list[int]]) -> int:
    """Replace every simulated user's feedback with this fold's training events; returns how many."""
    written = 0
    for u in users:
        engine.delete_user(u.name)
        for kind, items in (("like", train_likes[u.name]), ("click", u.clicks), ("dislike", u.dislikes)):
            for item in items:
                engine.feedback(u.name, item, kind)
                written += 1
    return written


def _summary(values: Sequence[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": round(float(arr.mean()), 4), "std": round(float(arr.std()), 4),
            "folds": [round(float(v), 4) for v in arr]}


def _bin_of(history: int) -> str | None:
    for lo, hi in HISTORY_BINS:
        if lo <= history <= hi:
            return f"{lo}-{hi}" if hi < 10**6 else f"{lo}+"
    return None


def evaluate(engine: Engine, users: Sequence[SimUser], folds: int, seed: int,
             methods: Sequence[str] = METHODS) -> dict[str, Any]:
    """K-fold evaluation of every method (and of personalised search) on ``users``."""
    size = len(catalogue(engine))
    parts = split_folds(users, folds, seed)
    per_fold: dict[str, dict[str, list[float]]] = {m: {} for m in methods}
    curve: dict[str, np.ndarray] = {m: np.zeros((K_CURVE, 2)) for m in methods}
    by_history: dict[str, dict[str, list[float]]] = {m: {} for m in methods}
    search: dict[str, list[float]] = {"plain": [], "personalised": []}
    chance: list[float] = []
    calls = 0
    for fold in range(folds):
        test = {name: p[fold] for name, p in parts.items()}
        train = {name: [i for j, part in enumerate(p) if j != fold for i in part] for name, p in parts.items()}
        write_feedback(engine, users, train)
        active = [u for u in users if test[u.name]]
        relevant = [set(test[u.name]) for u in active]
        rated = {u.name: len(set(train[u.name]) | set(u.clicks) | set(u.dislikes)) for u in active}
        chance.append(float(np.mean([len(g) / (size - rated[u.name]) for u, g in zip(active, relevant)])))
        for method in methods:
            lists10, lists20 = [], []
            for u in active:
                lists10.append([r.id for r in engine.recommend(u.name, k=K, method=method).results])
                lists20.append([r.id for r in engine.recommend(u.name, k=K_CURVE, method=method).results])
                calls += 2
            for name, value in mean_metrics(lists10, relevant, K, size).items():
                per_fold[method].setdefault(name, []).append(value)
            for k in range(1, K_CURVE + 1):
                m = mean_metrics(lists20, relevant, k, size)
                curve[method][k - 1] += (m["precision"] / folds, m["recall"] / folds)
            for u, ranked, wanted in zip(active, lists10, relevant):
                history = len(train[u.name]) + len(u.clicks)
                by_history[method].setdefault(_bin_of(history), []).append(f1_at(ranked, wanted, K))
        fold_search: dict[str, list[float]] = {"plain": [], "personalised": []}
        for u, wanted in zip(active, relevant):
            text = QueryPart("text", text=f"the digit {u.favourite}")
            for kind, user in (("plain", None), ("personalised", u.name)):
                hits = engine.search(Query((text,), k=K, user=user)).results
                fold_search[kind].append(len({r.id for r in hits} & wanted) / K)
                calls += 1
        for kind, values in fold_search.items():
            search[kind].append(float(np.mean(values)))
    table = {m: {name: _summary(v) for name, v in per_fold[m].items()} for m in methods}
    out: dict[str, Any] = {
        "k": K, "catalogue": size, "users": len(users), "folds": folds, "engine_calls": calls,
        "methods": table,
        "random_precision": round(float(np.mean(chance)), 4),
        "precision_recall": {m: {"k": list(range(1, K_CURVE + 1)),
                                 "precision": [round(float(v), 4) for v in curve[m][:, 0]],
                                 "recall": [round(float(v), 4) for v in curve[m][:, 1]]} for m in methods},
        "f1_by_history": {m: {b: {"mean": round(float(np.mean(v)), 4), "users": len(v)}
                              for b, v in sorted(by_history[m].items(), key=lambda kv: _bin_order(kv[0]))}
                          for m in methods},
        "search": _search_lift(search),
    }
    if "hybrid" in methods:
        out["hybrid_vs"] = _hybrid_vs(per_fold, methods)
    return out


def _bin_order(name: str | None) -> int:
    return int(str(name).split("-")[0].rstrip("+")) if name else 0


def _search_lift(search: dict[str, list[float]]) -> dict[str, Any]:
    """Precision@k of held-out likes in plain vs personalised search, and the lift between them."""
    plain, personal = np.asarray(search["plain"]), np.asarray(search["personalised"])
    lift = personal / np.maximum(plain, 1e-9)
    return {"query": "the digit <favourite label>", "plain_precision": _summary(plain),
            "personalised_precision": _summary(personal), "difference": _summary(personal - plain),
            "lift": _summary(lift)}


def _hybrid_vs(per_fold: dict[str, dict[str, list[float]]], methods: Sequence[str]) -> dict[str, Any]:
    """Whether the hybrid's F1@k beats each other method beyond the fold spread: its mean minus
    one std above the other's mean plus one std (the bands do not overlap). The paired fold-by-
    fold difference is given too (same folds, so it is the tighter comparison)."""
    hybrid = np.asarray(per_fold["hybrid"]["f1"])
    out = {}
    for m in methods:
        if m == "hybrid":
            continue
        other = np.asarray(per_fold[m]["f1"])
        diff = hybrid - other
        out[m] = {"f1_difference": _summary(diff),
                  "beats_beyond_spread": bool(hybrid.mean() - hybrid.std() > other.mean() + other.std()),
                  "wins_every_fold": bool((diff > 0).all())}
    return out


def plot(result: dict[str, Any], folder: Path) -> list[Path]:
    """The precision-recall curve and F1@k by history length, as PNGs in ``folder``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plots need matplotlib: .venv/bin/pip install -e '.[eval]' (or pip install 'matplotlib>=3.8')")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for m, c in result["precision_recall"].items():
        ax.plot(c["recall"], c["precision"], marker="o", markersize=3, label=m)
    ax.axhline(result["random_precision"], color="grey", linestyle=":", label="random list")
    ax.set_xlabel(f"recall@k (k = 1..{K_CURVE})")
    ax.set_ylabel("precision@k")
    ax.set_title(f"Held-out likes, {result['users']} simulated users, {result['folds']}-fold")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    paths.append(folder / "recommendation_pr.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for m, bins in result["f1_by_history"].items():
        names = [b for b in bins if b != "None"]
        ax.plot([f"{b}\n({bins[b]['users']})" for b in names], [bins[b]["mean"] for b in names], marker="o",
                label=m)
    ax.set_xlabel("training history: likes + clicks (user-folds)")
    ax.set_ylabel(f"F1@{result['k']}")
    ax.set_title("F1 by the user's history length")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    paths.append(folder / "recommendation_history.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def prepare(collection: Path | None, workdir: Path) -> Path:
    """A collection folder the evaluation may write feedback into: the demo corpus indexed
    afresh, or a copy of ``collection`` with its existing feedback removed."""
    folder = workdir / "collection"
    if collection is None:
        with Engine.open(folder, create=True, settings=Settings()) as engine:
            engine.index([CORPUS_LIST], progress=False)
        return folder
    shutil.copytree(collection, folder)
    with Engine.open(folder) as engine:
        for user in {u for u, _, _, _ in engine.collection.feedback.all_events()}:
            engine.delete_user(user)
    return folder


def run(collection: Path | None, users: int, folds: int, seed: int) -> dict[str, Any]:
    """Simulate, cross-validate and summarise, in a temporary folder removed afterwards."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="eval-recs-") as tmp:
        folder = prepare(collection, Path(tmp))
        built = time.perf_counter() - started
        with Engine.open(folder) as engine:
            items = catalogue(engine)
            if len({i.label for i in items}) < 2:
                raise SystemExit(f"{collection}: needs items with a 'label' (at least two labels) to simulate tastes")
            population = simulate(items, users, seed, min_likes=folds)
            result = evaluate(engine, population, folds, seed)
    result["seed"] = seed
    result["collection"] = str(collection) if collection else "demo corpus (built into a temporary folder)"
    result["seconds"] = {"prepare": round(built, 1), "total": round(time.perf_counter() - started, 1)}
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", type=Path, default=None,
                        help="a collection folder (copied, never changed); default: build the demo corpus")
    parser.add_argument("--users", type=int, default=60)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("build/eval_recommendations.json"))
    parser.add_argument("--plots", type=Path, default=None, help="a folder for the PNG plots (e.g. docs/)")
    args = parser.parse_args(argv)
    if args.users < 2 or args.folds < 2:
        parser.error("--users and --folds must be at least 2")
    result = run(args.collection, args.users, args.folds, args.seed)
    if args.plots is not None:
        result["plots"] = [str(p) for p in plot(result, args.plots)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
