"""Top-k metrics of a recommender: how many of a user's held-out likes a ranked list finds.

A list is judged against the set of items the user liked but the recommender did not see
(the test fold). Per user: precision@k = hits / k (a short list is not rewarded for being
short), recall@k = hits / |relevant|, F1@k their harmonic mean (0 when both are 0), and nDCG@k
with binary gains, normalised by the best list that could have been made of ``k`` items.
Averages are over users (each user counts once, however long their history), and coverage is
the share of the catalogue that appears in anyone's list: a recommender that shows everyone
the same ten items scores low there whatever its precision.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected a positive integer, got {k!r}")


def hits_at(ranked: Sequence[int], relevant: Collection[int], k: int) -> int:
    """How many of the first ``k`` of ``ranked`` are relevant (a repeated item counts once)."""
    _check_k(k)
    return len(set(ranked[:k]) & set(relevant))


def precision_at(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    """hits / k: the share of the k slots spent on a held-out like."""
    return hits_at(ranked, relevant, k) / k


def recall_at(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    """hits / |relevant|; 0 for a user with nothing held out (no evidence either way)."""
    return hits_at(ranked, relevant, k) / len(set(relevant)) if relevant else 0.0


def f1_at(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    """The harmonic mean of precision@k and recall@k, 0 when both are 0."""
    p, r = precision_at(ranked, relevant, k), recall_at(ranked, relevant, k)
    return 2.0 * p * r / (p + r) if p + r > 0 else 0.0


def ndcg_at(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    """Binary-gain nDCG@k: sum of 1/log2(rank + 1) over relevant items in the top k (rank from 1),
    divided by the same sum for a list with every slot it can fill relevant."""
    _check_k(k)
    wanted = set(relevant)
    if not wanted:
        return 0.0
    seen: set[int] = set()
    dcg = 0.0
    for rank, item in enumerate(ranked[:k], start=1):
        if item in wanted and item not in seen:
            dcg += 1.0 / math.log2(rank + 1)
        seen.add(item)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(k, len(wanted)) + 1))
    return dcg / ideal


def coverage(lists: Iterable[Sequence[int]], catalogue_size: int, k: int | None = None) -> float:
    """The share of a catalogue of ``catalogue_size`` items that appears in at least one list
    (each cut to its first ``k`` when given)."""
    if catalogue_size <= 0:
        raise ValueError(f"catalogue_size: expected a positive number, got {catalogue_size!r}")
    shown: set[int] = set()
    for ranked in lists:
        shown.update(ranked if k is None else ranked[:k])
    return len(shown) / catalogue_size


def mean_metrics(lists: Sequence[Sequence[int]], relevant: Sequence[Collection[int]], k: int,
                 catalogue_size: int) -> dict[str, float]:
    """Precision, recall, F1 and nDCG@k averaged over users (``lists[u]`` judged against
    ``relevant[u]``), and coverage@k over all the lists."""
    if len(lists) != len(relevant):
        raise ValueError(f"{len(lists)} lists but {len(relevant)} relevant sets")
    n = max(len(lists), 1)
    return {
        "precision": sum(precision_at(r, g, k) for r, g in zip(lists, relevant)) / n,
        "recall": sum(recall_at(r, g, k) for r, g in zip(lists, relevant)) / n,
        "f1": sum(f1_at(r, g, k) for r, g in zip(lists, relevant)) / n,
        "ndcg": sum(ndcg_at(r, g, k) for r, g in zip(lists, relevant)) / n,
        "coverage": coverage(lists, catalogue_size, k),
    }


__all__: Sequence[str] = ["coverage", "f1_at", "hits_at", "mean_metrics", "ndcg_at", "precision_at", "recall_at"]
