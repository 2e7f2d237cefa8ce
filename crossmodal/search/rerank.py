"""Personalised reranking: a user's preference vector from their feedback, blended into scores,
and optional maximal-marginal-relevance diversity.

u = normalise(sum_e w_e * 0.5 ** (age_e / half_life) * v_item(e)): likes pull towards an
item, dislikes push away, clicks pull gently; old events fade. The final score of a candidate
x is (1 - beta) * relevance(q, x) + beta * cos(u, x), with beta = 0 for a user without history.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from crossmodal.settings import PersonalSettings
from crossmodal.storage.catalog import Catalog
from crossmodal.storage.feedback import FeedbackStore


@dataclass(frozen=True)
class Preference:
    """A user's preference vector and what it was built from: ``shares`` says how much of it comes
    from items of each modality, so that its cosines can be calibrated (see `scoring.py`)."""

    vector: np.ndarray | None
    events: int
    shares: Mapping[str, float] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.vector is not None


def preference_vector(feedback: FeedbackStore, catalog: Catalog, user: str | None, settings: PersonalSettings,
                      now: float | None = None) -> Preference:
    """The user's preference vector, or an inactive one when they have no usable history."""
    if user is None:
        return Preference(None, 0)
    events = feedback.events(user)
    if not events:
        return Preference(None, 0)
    vectors = catalog.item_vectors([item for item, _, _ in events])
    now = time.time() if now is None else now
    half_life = max(settings.half_life_days, 1e-6) * 86400.0
    weight_of = {"like": settings.like, "dislike": settings.dislike, "click": settings.click}
    modality_of = {item: fields["modality"] for item, fields in catalog.filter_fields(list(vectors)).items()}
    total = None
    mass: dict[str, float] = {}
    for item, event, ts in events:
        v = vectors.get(item)
        if v is None:
            continue
        w = weight_of[event] * 0.5 ** (max(0.0, now - ts) / half_life)
        total = w * v if total is None else total + w * v
        modality = modality_of.get(item, "text")
        mass[modality] = mass.get(modality, 0.0) + abs(w)
    if total is None:
        return Preference(None, len(events))
    norm = float(np.linalg.norm(total))
    if norm < 1e-9:
        return Preference(None, len(events))
    whole = sum(mass.values()) or 1.0
    return Preference((total / norm).astype(np.float32), len(events), {m: w / whole for m, w in mass.items()})


def blend(relevance: np.ndarray, personal: np.ndarray, beta: float) -> np.ndarray:
    """(1 - beta) * relevance + beta * personal."""
    return (1.0 - beta) * relevance + beta * personal


def mmr_order(scores: np.ndarray, vectors: np.ndarray, k: int, lam: float) -> list[int]:
    """Greedy maximal marginal relevance: each pick maximises lam * score - (1 - lam) * its
    highest similarity to the items already picked. lam = 1 is plain ranking by score."""
    n = len(scores)
    if lam >= 1.0 or n == 0:
        return list(np.argsort(-scores, kind="stable")[:k])
    chosen: list[int] = []
    closest = np.full(n, -np.inf)
    remaining = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        value = np.where(remaining, lam * scores - (1.0 - lam) * penalty, -np.inf)
        pick = int(np.argmax(value))
        chosen.append(pick)
        remaining[pick] = False
        closest = np.maximum(closest, vectors @ vectors[pick])
    return chosen


def personal_scores(pref: Preference, vectors: np.ndarray) -> np.ndarray:
    if not pref.active or len(vectors) == 0:
        return np.zeros(len(vectors), dtype=np.float32)
    return vectors @ pref.vector


__all__: Sequence[str] = ["Preference", "blend", "mmr_order", "personal_scores", "preference_vector"]
