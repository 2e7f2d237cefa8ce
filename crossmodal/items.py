"""What ingest hands to storage: embedded items with their vectors and segments.

Plain values, so that ingest (which makes them) and storage (which keeps them) need not know
each other; the indexing run in `crossmodal.core` passes them from one to the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

VECTOR_KINDS = ("text", "image", "audio", "fused")
"""An item's vectors: one per modality it has (audio windows and text chunks as segments), and
a fused one for an item with several modalities."""


@dataclass(frozen=True)
class NewSegment:
    """An audio window (seconds) or text chunk (characters) with its vector."""

    modality: str
    start: float
    end: float
    vector: np.ndarray
    text: str | None = None


@dataclass
class NewItem:
    """Everything needed to store one embedded item in one transaction."""

    content_hash: str
    modality: str
    modalities: tuple[str, ...]
    meta: dict = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    segments: list[NewSegment] = field(default_factory=list)


@dataclass(frozen=True)
class Skip:
    """An input that was not indexed, and why."""

    source: str
    reason: str
