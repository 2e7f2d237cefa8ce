"""The index-backend interface: all the collection and the planner ask of a vector index.

A collection keeps one index per modality plus the joint one (see ``INDEX_KINDS`` in
`collection.py`), in one backend chosen when the collection is created:

* ``faiss``  index files in the collection folder, loaded and searched in-process (`faiss_backend.py`);
* ``milvus`` one Milvus collection per index, in Milvus Lite (a file in the collection folder)
             or a Milvus server (`milvus_backend.py`).

Either way the catalog holds every vector, so an index is derived data: the collection brings it
up to the catalog (append, remove, or rebuild), asks the backend to persist it, and then
publishes a manifest entry naming what was persisted. The planner only calls `VectorIndex.search`
and reads `ntotal`; it scores candidates exactly from the catalog and checks every one against
the filters, so a backend may return a superset of what a filter allows, never less.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import faiss
import numpy as np

from crossmodal.errors import BackendError
from crossmodal.settings import IndexSettings
from crossmodal.storage.filters import Filters

BACKENDS = ("faiss", "milvus")

class VectorIndex(ABC):
    """One searchable index over L2-normalised float32 vectors keyed by catalog vector ids."""

    pushes_filters: ClassVar[bool] = False
    """True when `search` evaluates `Filters` itself (a Milvus expression); else the caller passes
    the allowed ids as ``selector_ids``."""

    @property
    @abstractmethod
    def kind(self) -> str:
        """What was built (flat, hnsw, ivf_flat, ivf_pq); recorded in the manifest."""

    @abstractmethod
    def count(self) -> int:
        """Vectors stored right now (asks a server, so sync code uses it, not the query path)."""

    @property
    def ntotal(self) -> int:
        """Vectors stored, as of the last change this process saw: cheap enough for every query."""
        return self.count()

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under new catalog ids."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int:
        """Remove ids (absent ones are ignored); returns how many were removed."""

    @abstractmethod
    def stored_ids(self) -> np.ndarray:
        """Every id stored (int64, any order): O(n), for reconciling with the catalog."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """The dimension of the vectors it holds."""

    @abstractmethod
    def sample_ids(self, n: int) -> np.ndarray:
        """Up to ``n`` of the stored ids, cheaply (no full scan): for checking, when an index is
        opened, that it holds the vector kinds its name says."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int, *, selector_ids: np.ndarray | None = None,
               filters: Filters | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores (q, k) float32 cosines, ids (q, k) int64), best first; missing results are id -1
        with score -inf. ``selector_ids`` restricts results to those ids; ``filters`` is honoured
        only where `pushes_filters` (as a superset: the caller still checks every result)."""

    def recall(self, ids: np.ndarray, vectors: np.ndarray, sample: int, k: int = 10) -> float:
        """Recall@k against exact search over (ids, vectors), from ``sample`` queries made of stored
        vectors plus a little noise, so they are near, but not equal to, indexed points."""
        n = vectors.shape[0]
        if not n or sample < 1:
            return 1.0
        k = min(k, n)
        rng = np.random.default_rng(0)
        rows = rng.choice(n, size=min(sample, n), replace=False)
        noise = rng.normal(scale=0.1 / math.sqrt(vectors.shape[1]), size=(rows.size, vectors.shape[1]))
        queries = (vectors[rows] + noise).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        _, exact_rows = faiss.knn(queries, np.ascontiguousarray(vectors, dtype=np.float32), k,
                                  metric=faiss.METRIC_INNER_PRODUCT)
        hits = 0
        for query, exact in zip(queries, ids[exact_rows]):
            _, got = self.search(query[None, :], k)
            hits += np.intersect1d(exact, got[0][got[0] >= 0]).size
        return hits / (k * rows.size)


class IndexBackend(ABC):
    """Where a collection's indexes live: builds, opens, persists and drops them."""

    name: ClassVar[str]
    removes_in_place: ClassVar[bool] = False
    """True when removing ids from a published index is cheap and safe for readers (so a sync
    deletes them in place); False rebuilds instead, as FAISS does."""
    counts_are_final: ClassVar[bool] = True
    """True when a published index never changes after its manifest entry is written (FAISS files),
    so its count must equal the entry's; False where appends land in place before the manifest
    catches up (Milvus)."""

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """The manifest's ``backend`` block: enough to reopen it, and no secrets."""

    def ready(self) -> None:
        """Fail now if the backend cannot be reached, before a long run that ends by writing to it."""
        return None

    @abstractmethod
    def plan(self, count: int, dim: int, settings: IndexSettings) -> tuple[str, Any]:
        """(kind wanted for ``count`` vectors, build parameters for it)."""

    def reusable(self, entry: dict[str, Any], kind: str) -> bool:
        """Whether the published index ``entry`` can be brought up to date rather than rebuilt."""
        return entry.get("kind") == kind

    def outdated(self, entry: dict[str, Any]) -> bool:
        """Whether the published index ``entry`` was written in a layout this version replaced (the
        next sync rebuilds it; searching it still works)."""
        return False

    def publish(self, manifest: dict[str, Any], roots: list[dict[str, Any]]) -> None:
        """Hand the just-written manifest and the collection's roots to readers that cannot see the
        collection folder (a Milvus server's search nodes); nothing for a backend without such readers."""
        return None

    @abstractmethod
    def open(self, name: str, entry: dict[str, Any]) -> VectorIndex:
        """The published index ``name`` described by its manifest ``entry``."""

    @abstractmethod
    def build(self, name: str, ids: np.ndarray, vectors: np.ndarray, kind: str, params: Any) -> VectorIndex:
        """A new index of ``kind`` holding (ids, vectors), not yet visible to readers."""

    @abstractmethod
    def persist(self, name: str, index: VectorIndex, generation: int) -> dict[str, Any]:
        """Make ``index`` durable; returns its manifest entry (what `open` needs, kind, ntotal)."""

    @abstractmethod
    def discard(self, keep: dict[str, dict[str, Any]]) -> None:
        """Delete stored indexes no entry in ``keep`` names (after a new manifest is published)."""

    def strays(self, keep: dict[str, dict[str, Any]]) -> list[str]:
        """Stored indexes no entry in ``keep`` names (left by a killed run): what `discard` deletes."""
        return []

    def describe(self, name: str, entry: dict[str, Any]) -> str:
        """Where the published index ``entry`` lives, as an error message names it."""
        return f"the {name} index"

    def entry_fault(self, name: str, entry: dict[str, Any]) -> str | None:
        """What is wrong with the published index ``entry`` that costs no more than a stat to see
        (a missing file, a size other than the one recorded); None when nothing is."""
        return None

    def content_fault(self, name: str, entry: dict[str, Any]) -> str | None:
        """`entry_fault`, plus what a full read sees without the catalog (a file whose SHA-256 is not
        the one recorded when it was written); None when nothing is wrong, or nothing can be checked."""
        return self.entry_fault(name, entry)

    def destroy(self) -> None:
        """Delete every index this backend holds for the collection (rebuild, migration away)."""
        self.discard({})

    def sync_attributes(self, entries: dict[str, dict[str, Any]], fresh: set[str]) -> None:
        """Bring filterable fields stored beside the vectors up to the catalog, for the published
        ``entries`` (nothing for FAISS, whose filters are resolved against the catalog at query
        time). ``fresh`` names indexes built from scratch in this sync, hence already current."""
        return None

    def close(self) -> None:
        """Release connections (an open index is unusable afterwards)."""
        return None


def check_backend(name: str) -> str:
    """``name`` if it is a known backend, else a BackendError naming the choices."""
    if name not in BACKENDS:
        raise BackendError(f"unknown index backend {name!r}; use one of {list(BACKENDS)}")
    return name
