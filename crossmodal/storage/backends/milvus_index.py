"""A handle on one Milvus collection (one index of a crossmodal collection): add, remove,
count and search its entities. The backend (`milvus_backend.py`) owns the connection, the
error mapping and the entity layout it writes through."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from crossmodal.errors import BackendError
from crossmodal.storage.backends.base import VectorIndex
from crossmodal.storage.backends.milvus_filters import filter_expression
from crossmodal.storage.filters import Filters

if TYPE_CHECKING:
    from crossmodal.storage.backends.milvus_backend import MilvusBackend

MAX_TOPK = 16_384
"""Milvus refuses larger search limits and query windows."""
WRITE_BATCH = 1_000
ID_BATCH = 10_000
MISSING_SCORE = -np.inf
METRIC = "COSINE"
READ = "Bounded"
"""The consistency of the query path's reads (searches, and a search node's reads of entities and
of the manifest). A Strong read waits for the server's next time tick: about 400 ms per call on
Milvus 2.3, several calls per query. Every write path here ends with a Strong count, which returns
only once the query node has consumed those writes, and the manifest is published after it, so a
Bounded read (no wait while the query node is less than the server's graceful time behind) sees
everything published; vectors appended in place appear as soon as the query node has them. Sync
code (counts, id listings) stays Strong."""


def chunks(values: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


class MilvusIndex(VectorIndex):
    """A handle on one Milvus collection; nothing is held in this process but its count."""

    pushes_filters = True

    def __init__(self, backend: MilvusBackend, collection: str, kind: str, search_params: dict[str, Any],
                 ntotal: int) -> None:
        self.backend = backend
        self.collection = collection
        self._kind = kind
        self.search_params = search_params
        self._ntotal = ntotal

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def ntotal(self) -> int:
        return self._ntotal

    def count(self) -> int:
        with self.backend.errors(f"counting {self.collection}"):
            rows = self.backend.client.query(self.collection, filter="", output_fields=["count(*)"],
                                             consistency_level="Strong")
        self._ntotal = int(rows[0]["count(*)"])
        return self._ntotal

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Upsert, so ids a crashed run already wrote are replaced rather than refused."""
        self.write(ids, vectors, upsert=True)

    def write(self, ids: np.ndarray, vectors: np.ndarray, upsert: bool) -> None:
        """Store vectors with their items' filter fields, in batches the server accepts."""
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != ids.shape[0]:
            raise BackendError(f"{ids.shape[0]} ids for vectors of shape {vectors.shape}")
        client = self.backend.client
        for start in range(0, ids.shape[0], WRITE_BATCH):
            rows = self.backend.rows(ids[start:start + WRITE_BATCH], vectors[start:start + WRITE_BATCH])
            if not rows:
                continue
            with self.backend.errors(f"writing to {self.collection}"):
                if upsert:
                    client.upsert(self.collection, rows)
                else:
                    client.insert(self.collection, rows)
        self.count()

    def remove(self, ids: np.ndarray) -> int:
        drop = [int(i) for i in np.unique(np.asarray(ids, dtype=np.int64))]
        if not drop:
            return 0
        before = self.count()
        for part in chunks(drop, ID_BATCH):
            with self.backend.errors(f"deleting from {self.collection}"):
                self.backend.client.delete(self.collection, ids=part)
        return before - self.count()

    def stored_ids(self) -> np.ndarray:
        """Every stored id, read in id windows no larger than Milvus's query limit."""
        out: list[int] = []
        bound = self.backend.id_bound()
        for low in range(0, bound + 1, MAX_TOPK):
            with self.backend.errors(f"listing ids of {self.collection}"):
                rows = self.backend.client.query(self.collection, filter=f"id >= {low} and id < {low + MAX_TOPK}",
                                                 output_fields=["id"], limit=MAX_TOPK, consistency_level="Strong")
            out.extend(int(r["id"]) for r in rows)
        return np.array(out, dtype=np.int64)

    @property
    def dim(self) -> int:
        with self.backend.errors(f"describing {self.collection}"):
            fields = self.backend.client.describe_collection(self.collection)["fields"]
        return next(int(f["params"]["dim"]) for f in fields if f["name"] == "vector")

    def sample_ids(self, n: int) -> np.ndarray:
        with self.backend.errors(f"reading {self.collection}"):
            rows = self.backend.client.query(self.collection, filter="id >= 0", output_fields=["id"], limit=int(n),
                                             consistency_level="Strong")
        return np.array([int(r["id"]) for r in rows], dtype=np.int64)

    def existing(self, ids: list[int]) -> list[int]:
        """Which of ``ids`` this collection holds."""
        found: list[int] = []
        for part in chunks(ids, MAX_TOPK):
            with self.backend.errors(f"reading {self.collection}"):
                rows = self.backend.client.query(self.collection, filter=f"id in {part}", output_fields=["id"],
                                                 limit=MAX_TOPK, consistency_level="Strong")
            found.extend(int(r["id"]) for r in rows)
        return found

    def search(self, queries: np.ndarray, k: int, *, selector_ids: np.ndarray | None = None,
               filters: Filters | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by cosine with ``filters`` pushed down as an expression (and ``selector_ids`` as
        ``id in [...]``); k is capped at Milvus's limit of 16,384."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise BackendError(f"k must be a positive integer; got {k!r}")
        scores = np.full((q.shape[0], int(k)), MISSING_SCORE, dtype=np.float32)
        labels = np.full((q.shape[0], int(k)), -1, dtype=np.int64)
        clauses = []
        expression = filter_expression(filters, self.backend.infix_like)
        if expression:
            clauses.append(f"({expression})")
        if selector_ids is not None:
            allowed = np.unique(np.asarray(selector_ids, dtype=np.int64))
            if not allowed.size:
                return scores, labels
            clauses.append(f"id in {allowed.tolist()}")
        if not q.shape[0]:
            return scores, labels
        limit = min(int(k), MAX_TOPK)
        params = dict(self.search_params)
        if "ef" in params:
            params["ef"] = max(int(params["ef"]), limit)
        with self.backend.errors(f"searching {self.collection}"):
            result = self.backend.client.search(
                self.collection, data=list(q), limit=limit, filter=" and ".join(clauses),
                output_fields=["id"], search_params={"metric_type": METRIC, "params": params},
                consistency_level=READ)
        for row, hits in enumerate(result):
            for col, hit in enumerate(hits):
                labels[row, col] = int(hit["id"])
                scores[row, col] = float(hit["distance"])
        return scores, labels
