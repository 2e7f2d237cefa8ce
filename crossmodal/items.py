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


@dataclass(frozen=True)
class Root:
    """A place a collection was asked to index: a folder (everything under it) or a single
    file, as a real path (symbolic links resolved). Only files inside a root are read or served."""

    path: str
    is_folder: bool

    def contains(self, real_path: str) -> bool:
        """Whether ``real_path`` (symbolic links already resolved) lies inside this root."""
        if not self.is_folder:
            return real_path == self.path
        return real_path == self.path or real_path.startswith(self.path.rstrip("/") + "/")

    def relative(self, path: str) -> str | None:
        """``path`` shown from its root: the root's own name and the rest
        (``Pictures/2024/cat.jpg``, ``notes.jsonl#L4``), or None when it is not under this root
        (compared as written, before resolving links)."""
        base = self.path.rstrip("/") or "/"
        name = base.rsplit("/", 1)[-1] or base
        if path == base:
            return name
        if path.startswith(base + "#L"):
            return name + path[len(base):]
        if self.is_folder and path.startswith(base.rstrip("/") + "/"):
            return f"{name}/{path[len(base.rstrip('/')) + 1:]}"
        return None
