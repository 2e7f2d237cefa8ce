"""Scores of every candidate item for one user, from each source and blended.

- content: cos(u, v_item), u the user's preference vector (`search.rerank`), standardised
  within each item modality (z over that modality's candidates) and squashed into [0, 1], so
  that images, sounds and texts compete fairly (raw cosines differ in scale per direction).
- collaborative: x_u . y_i of the ALS model, standardised over the items it knows and squashed
  the same way; an item it does not know (no one reacted to it yet) gets none.
- popularity: log(1 + n_i) / log(1 + max n), n_i the users who liked or clicked the item.
- hybrid: w_cf collaborative + (1 - w_cf) (s_u content + (1 - s_u) popularity), with
  s_u = n_u / (n_u + c_u) and w_cf = s_u * n_i / (n_i + c_i), n_u the user's positive
  history, n_i the item's. A user's own taste (content) earns its weight against what many
  people liked as their history grows, the way a cold-start user (no usable history at all)
  gets popularity alone; an item few people reacted to leans on content (a new item gets its
  content score, s_u times it), a well-known user and item on the collaborative part. That
  part is ALS, or with co-likes given, (1 - c) ALS + c co-likes: the item-to-item links of
  the related-items graph from the user's liked items (`[recommend] co_liked` = c).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

METHODS = ("hybrid", "content", "collaborative", "popular")


def squash(z: np.ndarray) -> np.ndarray:
    """z into (0, 1), 0.5 at the mean (a logistic, written with tanh so it never overflows)."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


SPREAD_FLOOR = 1e-3
"""Least spread a group's scores are divided by: scores that differ by float noise only (a
group of equally liked items) stay equal instead of being blown apart."""


def grouped_z(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``values`` standardised within each group (NaN stays NaN); a group whose values hardly
    differ gets z near 0 (the spread is at least `SPREAD_FLOOR`)."""
    out = np.full(len(values), np.nan, dtype=np.float64)
    for g in np.unique(groups):
        member = (groups == g) & np.isfinite(values)
        if not member.any():
            continue
        v = values[member]
        out[member] = (v - v.mean()) / max(float(v.std()), SPREAD_FLOOR)
    return out


def cf_weight(user_history: int, item_history: np.ndarray, user_constant: float, item_constant: float) -> np.ndarray:
    """How much of the blend the collaborative score gets, per item: both the user and the item
    need history before co-occurrence says more than content."""
    n_i = np.asarray(item_history, dtype=np.float64)
    u = user_history / (user_history + user_constant) if user_history > 0 else 0.0
    return u * n_i / (n_i + item_constant)


@dataclass
class SourceScores:
    """Per candidate: each source's score in [0, 1] (NaN where the source has none), the
    collaborative weight, and the final score; ``used`` names the method that actually ranked
    (a cold-start user asking for "hybrid" gets "popular")."""

    content: np.ndarray
    collaborative: np.ndarray
    popularity: np.ndarray
    cf_weight: np.ndarray
    final: np.ndarray
    used: str

    def scored(self) -> np.ndarray:
        """Which candidates the method that ranked actually scored: every one for content (and
        a hybrid with content), those the model knows for collaborative, those someone liked
        for popular. The rest share a score of 0 and are a thin list's arbitrary tail."""
        if self.used == "content" or (self.used == "hybrid" and np.isfinite(self.content).any()):
            return np.ones(len(self.final), dtype=bool)
        if self.used == "popular":
            return self.popularity > 0
        return np.isfinite(self.collaborative) | ((self.popularity > 0) & (self.used == "hybrid"))


def blend_scores(method: str, content_cos: np.ndarray | None, modalities: np.ndarray, cf_raw: np.ndarray | None,
                 item_history: np.ndarray, user_history: int, user_constant: float,
                 item_constant: float, co_liked: np.ndarray | None = None, co_weight: float = 0.0) -> SourceScores:
    """The final score of each candidate under ``method`` (one of `METHODS`)."""
    n = len(modalities)
    nan = np.full(n, np.nan)
    content = squash(grouped_z(content_cos, modalities)) if content_cos is not None else nan
    if cf_raw is not None and np.isfinite(cf_raw).any():
        collaborative = squash(grouped_z(cf_raw, np.zeros(n, dtype=np.int64)))
    else:
        collaborative = nan
    counts = np.asarray(item_history, dtype=np.float64)
    top = float(counts.max()) if n else 0.0
    popularity = np.log1p(counts) / np.log1p(top) if top > 0 else np.zeros(n)
    weight = np.zeros(n)
    has_content, has_cf = content_cos is not None, bool(np.isfinite(collaborative).any())
    if method == "popular" or (method == "content" and not has_content) or \
            (method == "collaborative" and not has_cf) or (method == "hybrid" and not has_content and not has_cf):
        return SourceScores(content, collaborative, popularity, weight, popularity.copy(), "popular")
    if method == "content":
        return SourceScores(content, collaborative, popularity, weight, content.copy(), "content")
    if method == "collaborative":
        final = np.where(np.isfinite(collaborative), collaborative, 0.0)
        return SourceScores(content, collaborative, popularity, np.ones(n), final, "collaborative")
    base = content if has_content else popularity
    if has_content:
        share = user_history / (user_history + user_constant) if user_history > 0 else 0.0
        base = share * content + (1.0 - share) * popularity
    if has_cf and co_liked is not None and co_weight > 0:
        collaborative = np.where(np.isfinite(collaborative),
                                 (1.0 - co_weight) * collaborative + co_weight * co_liked, np.nan)
    if has_cf:
        weight = np.where(np.isfinite(collaborative), cf_weight(user_history, counts, user_constant, item_constant),
                          0.0)
    final = weight * np.nan_to_num(collaborative) + (1.0 - weight) * base
    return SourceScores(content, collaborative, popularity, weight, final, "hybrid")


def history_of(items: np.ndarray, counts: Mapping[int, int]) -> np.ndarray:
    """Each item's count from ``counts`` (0 for an item no one reacted to)."""
    return np.array([counts.get(int(i), 0) for i in items], dtype=np.int64)
