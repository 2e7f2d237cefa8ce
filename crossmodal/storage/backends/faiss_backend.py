"""The FAISS backend: one index file per index in the collection folder, searched in-process.

Files are written under generation-numbered names (``image-12.faiss``) and only then named by
the manifest, so a reader (or a crash) always sees one consistent set. Filters arrive as the
allowed vector ids, which FAISS applies through ID selectors (see `faiss_search.search`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np

from crossmodal.settings import IndexSettings
from crossmodal.storage.backends import faiss_files, faiss_index, faiss_search
from crossmodal.storage.backends.base import IndexBackend, VectorIndex
from crossmodal.storage.filters import Filters


class FaissIndex(VectorIndex):
    """A loaded FAISS index and the parameters it is searched with."""

    def __init__(self, index: faiss.Index, params: faiss_index.IndexParams | None = None) -> None:
        self.index = index
        self.params = params or faiss_index.IndexParams()

    @property
    def kind(self) -> str:
        return faiss_index.index_kind(self.index)

    def count(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        faiss_index.add_vectors(self.index, vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        return faiss_index.remove_ids(self.index, ids)

    def stored_ids(self) -> np.ndarray:
        return faiss_index.stored_ids(self.index)

    def search(self, queries: np.ndarray, k: int, *, selector_ids: np.ndarray | None = None,
               filters: Filters | None = None) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        return faiss_search.search(self.index, q, k, self.params, selector_ids=selector_ids)

    def recall(self, ids: np.ndarray, vectors: np.ndarray, sample: int, k: int = 10) -> float:
        return faiss_search.recall_against_exact(self.index, vectors, ids, k=k, sample=sample, params=self.params)


class FaissBackend(IndexBackend):
    """Index files beside the manifest; the kind follows size and memory budget under ``auto``."""

    name = "faiss"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def spec(self) -> dict[str, Any]:
        return {"name": self.name}

    def plan(self, count: int, dim: int, settings: IndexSettings) -> tuple[str, faiss_index.IndexParams]:
        if settings.kind != "auto":
            return settings.kind, faiss_index.IndexParams()
        kind = faiss_index.choose_index_kind(count, dim, settings.memory_budget_mb * 2**20, settings.flat_max)
        return kind, faiss_index.auto_params(kind)

    def open(self, name: str, entry: dict[str, Any]) -> FaissIndex:
        return FaissIndex(faiss_files.read_index(self.folder / entry["file"]))

    def build(self, name: str, ids: np.ndarray, vectors: np.ndarray, kind: str,
              params: faiss_index.IndexParams) -> FaissIndex:
        return FaissIndex(faiss_index.build_index(vectors, ids, kind, params), params)

    def persist(self, name: str, index: VectorIndex, generation: int) -> dict[str, Any]:
        assert isinstance(index, FaissIndex)
        filename = f"{name}-{generation}.faiss"
        faiss_files.write_index(index.index, self.folder / filename)
        return {"file": filename, "kind": index.kind, "ntotal": index.count(),
                "memory_bytes": faiss_index.index_memory_bytes(index.index)}

    def discard(self, keep: dict[str, dict[str, Any]]) -> None:
        names = {entry.get("file") for entry in keep.values()}
        for path in self.folder.glob("*.faiss"):
            if path.name not in names:
                path.unlink(missing_ok=True)
