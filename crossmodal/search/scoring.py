"""Scores of a query's candidates: raw cosines, calibrated relevance and the final ranking score.

Raw: each part's cosine; the query's cosine is the fused vector's (early fusion) or the weighted
part cosines (late fusion). Calibrated (`calibration.py`): each part's cosine becomes z in its
own direction (part modality → the index the candidate came from), parts combine by weight,
the sum is squashed into [0, 1] (the relevance), and the personal score, a taste in [0, 1]
(`calibration.mixed_taste`), is blended with it: (1 - beta) relevance + beta taste. Late fusion
by reciprocal rank ranks each part's candidates by their z, so a part ranks every target fairly.

Results of several targets are ordered by `mixed_order`: by band of z (one best-match spread
wide; every match within one spread of a typical best match, or closer, in the top band), and
inside a band round robin across targets, each target's best first. Within a spread, matches are
equally good by the collection's own measure (its best matches vary that much), so the order
among them says little; the round robin makes a page of equally good matches show every kind.

Without anchors for a direction the query needs (a collection too small or missing a modality),
everything is raw, as before calibration existed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from crossmodal.search.calibration import Calibration, mixed_taste, part_z, squash, unsquash
from crossmodal.search.rerank import Preference, blend, personal_scores


@dataclass
class Scores:
    """Per candidate row: what it is ranked by, and the parts of that."""

    final: np.ndarray
    cosine: np.ndarray
    """The raw relevance as a cosine: the fused query's (early) or the weighted parts' (late)."""
    part_cosines: np.ndarray
    personal: np.ndarray
    relevance: np.ndarray | None
    """Calibrated query relevance in [0, 1]; None when uncalibrated."""
    part_z: np.ndarray | None
    personal_z: np.ndarray | None
    """The user's taste for each candidate in [0, 1] (None without a user or calibration)."""
    final_z: np.ndarray | None = None
    """The calibrated final score before squashing (None when uncalibrated or fused by rank)."""

    @property
    def calibrated(self) -> bool:
        return self.relevance is not None


def _rrf(scores: np.ndarray, weights: np.ndarray, rrf_k: int) -> np.ndarray:
    """Weighted reciprocal-rank fusion of the columns of ``scores``, 1.0 for first in every part."""
    ranks = np.argsort(np.argsort(-scores, axis=0, kind="stable"), axis=0) + 1
    fused = (weights[None, :] / (rrf_k + ranks)).sum(axis=1)
    return fused / (weights.sum() / (rrf_k + 1))


def score_candidates(x: np.ndarray, vectors: np.ndarray, weights: np.ndarray, early: np.ndarray | None,
                     late_merge: str | None, rrf_k: int, pref: Preference, beta: float,
                     calibration: Calibration | None, modalities: Sequence[str], names: Sequence[str],
                     codes: np.ndarray) -> Scores:
    """Scores of candidate vectors ``x`` (rows; row i found in the index ``names[codes[i]]``) for
    query parts ``vectors`` of ``modalities`` with normalised ``weights``; ``early`` is the fused
    query vector under early fusion."""
    part_cosines = x @ vectors.T
    weighted = part_cosines @ weights
    cosine = x @ early if early is not None else weighted
    personal = personal_scores(pref, x)
    zp = part_z(calibration, modalities, names, codes, part_cosines) if calibration is not None else None
    z_personal = None
    if zp is not None and beta > 0:
        z_personal = mixed_taste(calibration, pref.shares, names, codes, personal)
        if z_personal is None:
            zp = None
    if zp is None:
        raw = _rrf(part_cosines, weights, rrf_k) if late_merge == "rrf" else cosine
        final = blend(raw, personal, beta) if beta > 0 else raw
        return Scores(final, cosine, part_cosines, personal, None, None, None)
    z_query = zp @ weights
    relevance = squash(z_query)
    if late_merge == "rrf":
        ranked = _rrf(zp, weights, rrf_k)
        final = blend(ranked, z_personal, beta) if beta > 0 else ranked
        return Scores(final, cosine, part_cosines, personal, relevance, zp, z_personal)
    if beta > 0:
        final = blend(relevance, z_personal, beta)
        return Scores(final, cosine, part_cosines, personal, relevance, zp, z_personal, unsquash(final))
    return Scores(relevance, cosine, part_cosines, personal, relevance, zp, None, z_query)


BAND = 1.0
"""Width of a relevance band, in best-match spreads (z)."""


def mixed_order(z: np.ndarray, codes: np.ndarray, k: int) -> list[int]:
    """The first ``k`` of rows in result order: band of z (every z > -BAND in the top band),
    then rank within the row's target (``codes``, one integer per target), then z. One target
    gives plain order by z."""
    bands = np.minimum(np.ceil(z / BAND), 0.0)
    by_target = np.lexsort((-z, codes))  # rows grouped by target, best first within each
    starts = np.searchsorted(codes[by_target], codes[by_target])  # where each row's target begins
    rank = np.empty(len(z), dtype=np.int64)
    rank[by_target] = np.arange(len(z)) - starts
    return [int(i) for i in np.lexsort((-z, rank, -bands))[:k]]
