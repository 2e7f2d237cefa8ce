"""The FAISS backend: one index file per index in the collection folder, searched in-process.

Files are written under generation-numbered names (``image-12.faiss``) and only then named by
the manifest, so a reader (or a crash) always sees one consistent set. Filters arrive as the
allowed vector ids, which FAISS applies through ID selectors (see `faiss_search.search`).
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from crossmodal.errors import IndexFileError
from crossmodal.settings import IndexSettings
from crossmodal.storage.backends import faiss_files, faiss_index, faiss_search
from crossmodal.storage.backends.base import IndexBackend, VectorIndex
from crossmodal.storage.filters import Filters


class FaissIndex(VectorIndex):
    """A loaded FAISS index and the parameters it is searched with."""

    def __init__(self, index: faiss.Index, params: faiss_index.IndexParams | None = None,
                 path: Path | None = None) -> None:
        self.index = index
        self.params = params or faiss_index.IndexParams()
        self.path = path
        """The file it was read from (named in errors), if any."""

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

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def sample_ids(self, n: int) -> np.ndarray:
        return faiss_index.sample_ids(self.index, n)

    def search(self, queries: np.ndarray, k: int, *, selector_ids: np.ndarray | None = None,
               filters: Filters | None = None) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        try:
            return faiss_search.search(self.index, q, k, self.params, selector_ids=selector_ids)
        except (RuntimeError, MemoryError) as exc:  # FAISS's own failures: name the file, never a traceback
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise IndexFileError(self.path or "a FAISS index", f"search failed ({detail}); run `crossmodal check "
                                 f"--repair` on its collection") from exc

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
        path = self.folder / entry["file"]
        return FaissIndex(faiss_files.read_index(path), path=path)

    def build(self, name: str, ids: np.ndarray, vectors: np.ndarray, kind: str,
              params: faiss_index.IndexParams) -> FaissIndex:
        return FaissIndex(faiss_index.build_index(vectors, ids, kind, params), params)

    def persist(self, name: str, index: VectorIndex, generation: int) -> dict[str, Any]:
        assert isinstance(index, FaissIndex)
        filename = f"{name}-{generation}.faiss"
        path = self.folder / filename
        faiss_files.write_index(index.index, path)
        return {"file": filename, "kind": index.kind, "ntotal": index.count(),
                "memory_bytes": faiss_index.index_memory_bytes(index.index),
                "size": path.stat().st_size, "sha256": faiss_files.file_sha256(path)}

    def discard(self, keep: dict[str, dict[str, Any]]) -> None:
        for name in self.strays(keep):
            (self.folder / name).unlink(missing_ok=True)

    def strays(self, keep: dict[str, dict[str, Any]]) -> list[str]:
        names = {entry.get("file") for entry in keep.values()}
        return sorted(path.name for path in self.folder.glob("*.faiss") if path.name not in names)

    def describe(self, name: str, entry: dict[str, Any]) -> str:
        return str(self.folder / entry["file"])

    def entry_fault(self, name: str, entry: dict[str, Any]) -> str | None:
        try:
            st = (self.folder / entry["file"]).stat()
        except FileNotFoundError:
            return "the file is missing"
        except OSError as exc:
            return f"the file cannot be read ({exc.strerror or exc})"
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        size = entry.get("size")
        if size is not None and st.st_size != int(size):
            return f"it is {st.st_size} bytes long, but was {size} when it was written (truncated or replaced)"
        return None

    def content_fault(self, name: str, entry: dict[str, Any]) -> str | None:
        fault = self.entry_fault(name, entry)
        digest = entry.get("sha256")
        if fault is not None or not digest:
            return fault
        try:
            if faiss_files.file_sha256(self.folder / entry["file"]) != digest:
                return "its SHA-256 is not the one recorded when it was written (its bytes changed)"
        except IndexFileError as exc:
            return exc.reason
        return None
