"""Ranking metrics over embeddings: relevant = same label.

recall@k is the share of queries with at least one relevant item in the top k; AP averages
precision at the rank of every relevant item over the whole gallery. Within one modality the
query itself is left out of its gallery.
"""

from __future__ import annotations

import itertools

import numpy as np

from crossmodal.media import MODALITIES

KS = (1, 5, 10)


def direction_name(query: str, gallery: str) -> str:
    return f"{query}->{gallery}"


CROSS_MODAL_DIRECTIONS = [direction_name(q, g) for q, g in itertools.permutations(MODALITIES, 2)]
ALL_DIRECTIONS = CROSS_MODAL_DIRECTIONS + [direction_name(m, m) for m in MODALITIES]


def ranking_metrics(queries: np.ndarray, query_labels: np.ndarray, gallery: np.ndarray,
                    gallery_labels: np.ndarray, same_set: bool = False, ks: tuple[int, ...] = KS,
                    chunk: int = 512) -> dict[str, float | int]:
    """recall@k and mAP of cosine retrieval (inputs are L2-normalised rows)."""
    n = queries.shape[0]
    hits = {k: 0 for k in ks}
    ap_sum = 0.0
    counted = 0
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        sims = queries[start:stop] @ gallery.T
        relevant = query_labels[start:stop, None] == gallery_labels[None, :]
        if same_set:
            rows = np.arange(stop - start)
            sims[rows, rows + start] = -np.inf
            relevant[rows, rows + start] = False
        order = np.argsort(-sims, axis=1, kind="stable")
        ranked = np.take_along_axis(relevant, order, axis=1)
        if same_set:
            ranked = ranked[:, :-1]
        n_rel = ranked.sum(axis=1)
        keep = n_rel > 0
        ranked, n_rel = ranked[keep], n_rel[keep]
        counted += int(keep.sum())
        for k in ks:
            hits[k] += int(ranked[:, :k].any(axis=1).sum())
        cum = np.cumsum(ranked, axis=1)
        positions = np.arange(1, ranked.shape[1] + 1)[None, :]
        ap_sum += float((((cum / positions) * ranked).sum(axis=1) / n_rel).sum())
    if counted == 0:
        return {**{f"recall@{k}": float("nan") for k in ks}, "mAP": float("nan"),
                "queries": 0, "gallery": int(gallery.shape[0])}
    out: dict[str, float | int] = {f"recall@{k}": hits[k] / counted for k in ks}
    out["mAP"] = ap_sum / counted
    out["queries"] = counted
    out["gallery"] = int(gallery.shape[0] - (1 if same_set else 0))
    return out


def all_directions(embeddings: dict[str, np.ndarray], labels: dict[str, np.ndarray],
                   directions: list[str] | None = None) -> dict[str, dict[str, float | int]]:
    """Metrics for every direction whose two modalities both have items."""
    result = {}
    for name in ALL_DIRECTIONS if directions is None else directions:
        query, gallery = name.split("->")
        if query not in embeddings or gallery not in embeddings:
            continue
        if len(embeddings[query]) == 0 or len(embeddings[gallery]) == 0:
            continue
        result[name] = ranking_metrics(embeddings[query], labels[query], embeddings[gallery],
                                       labels[gallery], same_set=query == gallery)
    return result


def mean_cross_modal_map(metrics: dict[str, dict[str, float | int]]) -> float:
    """The model-selection score: mean mAP over the cross-modal directions present."""
    values = [float(metrics[d]["mAP"]) for d in CROSS_MODAL_DIRECTIONS
              if d in metrics and not np.isnan(metrics[d]["mAP"])]
    return float(np.mean(values)) if values else float("nan")
