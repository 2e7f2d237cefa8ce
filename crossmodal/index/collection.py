"""A collection on disk: manifest, catalog and one FAISS index per modality plus the joint one.

The catalog holds every vector, so index files are derived data. They are written under
generation-numbered names, then the manifest is replaced atomically to point at them, then
old files are deleted: a reader (or a crash) always sees one consistent set.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal import __version__
from crossmodal.catalog import Catalog
from crossmodal.errors import CrossmodalError
from crossmodal.index import faiss_index
from crossmodal.settings import IndexSettings

FORMAT = "crossmodal-collection"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CATALOG = "catalog.sqlite"
INDEX_KINDS: dict[str, tuple[str, ...]] = {
    "text": ("text",),
    "image": ("image",),
    "audio": ("audio",),
    "joint": ("text", "image", "audio", "fused"),
}


class CollectionError(CrossmodalError):
    """A collection is missing, damaged, or was built with another model."""


@dataclass(frozen=True)
class ModelInfo:
    """Which aligner a collection's vectors come from."""

    model_id: str
    sha256: str | None
    ref: str
    embed_dim: int


def atomic_write_text(path: Path, text: str) -> None:
    """Temporary file, fsync, rename, fsync of the folder: the old or the new file, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Collection:
    """Open with `Collection.open` (existing) or `Collection.create`; close when done."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder = folder
        self.manifest = manifest
        self.catalog = Catalog(folder / CATALOG)
        self._indexes: dict[str, Any] = {}
        self._manifest_stamp = self._stamp()
        self._refresh_lock = threading.Lock()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = (self.folder / MANIFEST).stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_ino

    def refresh(self) -> bool:
        """Pick up index files another process published since this one was opened (a server
        stays current while `crossmodal index` runs). Cheap when nothing changed: one stat."""
        stamp = self._stamp()
        if stamp == self._manifest_stamp or stamp is None:
            return False
        with self._refresh_lock:
            if stamp == self._manifest_stamp:
                return False
            manifest = self.read_manifest(self.folder)
            if manifest["model"] != self.manifest["model"]:
                raise CollectionError(f"collection {self.name!r} was rebuilt with another model; restart to use it")
            loaded = {name: faiss_index.read_index(self.folder / entry["file"])
                      for name, entry in manifest["indexes"].items()}
            self.manifest, self._indexes, self._manifest_stamp = manifest, loaded, stamp
        return True

    # Opening.
    @staticmethod
    def read_manifest(folder: Path) -> dict[str, Any]:
        path = folder / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CollectionError(f"no collection at {folder} (no {MANIFEST}); build one with "
                                  f"`crossmodal index PATH --index {folder.name}`") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CollectionError(f"{path}: unreadable collection manifest ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CollectionError(f"{path}: not a crossmodal collection manifest")
        if data.get("format_version") != FORMAT_VERSION:
            raise CollectionError(f"{path}: collection format {data.get('format_version')}, this crossmodal "
                                  f"reads {FORMAT_VERSION}; rebuild it with `crossmodal index --rebuild`")
        return data

    @classmethod
    def open(cls, folder: str | Path) -> Collection:
        folder = Path(folder)
        return cls(folder, cls.read_manifest(folder))

    @classmethod
    def create(cls, folder: str | Path, model: ModelInfo) -> Collection:
        """A new, empty collection bound to ``model``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        now = time.time()
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "crossmodal_version": __version__,
            "name": folder.name, "created_at": now, "updated_at": now,
            "model": {"id": model.model_id, "sha256": model.sha256, "ref": model.ref, "embed_dim": model.embed_dim},
            "catalog_generation": -1, "max_vector_id": 0, "counts": {}, "indexes": {},
        }
        atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=2))
        return cls(folder, manifest)

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def model(self) -> ModelInfo:
        m = self.manifest["model"]
        return ModelInfo(m["id"], m.get("sha256"), m["ref"], int(m["embed_dim"]))

    def check_model(self, model: ModelInfo) -> None:
        """Refuse to mix vectors of two models in one collection."""
        mine = self.model
        same = mine.sha256 == model.sha256 if mine.sha256 and model.sha256 else mine.model_id == model.model_id
        if not same or mine.embed_dim != model.embed_dim:
            raise CollectionError(
                f"collection {self.name!r} was built with model {mine.model_id}, not {model.model_id}; "
                f"search it without --model (its own model is used), or rebuild it for the new model with "
                f"`crossmodal index PATH... --index {self.name} --model {model.ref} --rebuild`")

    @property
    def stale(self) -> bool:
        """True when the catalog holds changes the index files do not (an interrupted run)."""
        return self.manifest.get("catalog_generation") != self.catalog.generation

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """One writer at a time per collection; readers are never blocked."""
        with open(self.folder / ".lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CollectionError(f"collection {self.name!r} is being written by another process") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # Index files.
    def sync_indexes(self, settings: IndexSettings, force: bool = False, progress=None) -> dict[str, Any]:
        """Bring the index files up to the catalog: append new vectors where nothing was removed
        and the index kind still fits, rebuild otherwise; then publish a new manifest."""
        generation = self.catalog.generation
        if not force and not self.stale and all(k in self.manifest["indexes"] for k in INDEX_KINDS):
            return self.manifest
        previous_threads = faiss_index.set_threads(settings.build_threads)
        try:
            return self._publish(settings, generation, force, progress)
        finally:
            faiss_index.set_threads(previous_threads)

    def _publish(self, settings: IndexSettings, generation: int, force: bool, progress) -> dict[str, Any]:
        old = self.manifest.get("indexes", {})
        old_max = int(self.manifest.get("max_vector_id", 0))
        new_max = self.catalog.max_vector_id()
        dim = self.model.embed_dim
        written: dict[str, Any] = {}
        for name, kinds in INDEX_KINDS.items():
            count = self.catalog.vector_count(kinds)
            budget = settings.memory_budget_mb * 2**20
            wanted = settings.kind if settings.kind != "auto" else faiss_index.choose_index_kind(
                count, dim, budget, settings.flat_max)
            params = faiss_index.auto_params(wanted) if settings.kind == "auto" else faiss_index.IndexParams()
            entry = old.get(name)
            index = None
            if not force and entry is not None and entry.get("kind") == wanted:
                added_ids, added = self.catalog.vectors_above(old_max, kinds)
                if int(entry["ntotal"]) + len(added_ids) == count:
                    index = self._load(name, entry)
                    if len(added_ids):
                        faiss_index.add_vectors(index, added, added_ids)
            rebuilt = index is None
            if rebuilt:
                ids, vectors = self.catalog.vectors(kinds, dim)
                index = faiss_index.build_index(vectors, ids, wanted, params)
            kind = faiss_index.index_kind(index)
            recall = entry.get("recall@10") if entry and not rebuilt else None
            if kind != "flat" and (rebuilt or recall is None) and index.ntotal:
                ids, vectors = self.catalog.vectors(kinds, dim)
                recall = faiss_index.recall_against_exact(index, vectors, ids, k=10,
                                                          sample=settings.recall_sample, params=params)
            filename = f"{name}-{generation}.faiss"
            faiss_index.write_index(index, self.folder / filename)
            written[name] = {"file": filename, "kind": kind, "ntotal": int(index.ntotal),
                             "recall@10": None if kind == "flat" else recall,
                             "memory_bytes": faiss_index.index_memory_bytes(index)}
            self._indexes[name] = index
            if progress is not None:
                progress(name, written[name])
        manifest = dict(self.manifest)
        manifest.update(indexes=written, catalog_generation=generation, max_vector_id=new_max,
                        counts=self.catalog.counts(), updated_at=time.time(), crossmodal_version=__version__)
        atomic_write_text(self.folder / MANIFEST, json.dumps(manifest, indent=2))
        self.manifest = manifest
        self._manifest_stamp = self._stamp()
        self._remove_unreferenced()
        return manifest

    def _remove_unreferenced(self) -> None:
        keep = {e["file"] for e in self.manifest["indexes"].values()}
        for path in self.folder.glob("*.faiss"):
            if path.name not in keep:
                path.unlink(missing_ok=True)

    def _load(self, name: str, entry: dict[str, Any]):
        return faiss_index.read_index(self.folder / entry["file"])

    def index(self, name: str):
        """The loaded FAISS index ``name`` (text, image, audio or joint), read once."""
        if name not in INDEX_KINDS:
            raise CollectionError(f"unknown index {name!r}; use one of {list(INDEX_KINDS)}")
        if name not in self._indexes:
            entry = self.manifest["indexes"].get(name)
            if entry is None:
                raise CollectionError(f"collection {self.name!r} has no {name} index yet; run `crossmodal index`")
            self._indexes[name] = self._load(name, entry)
        return self._indexes[name]

    def search(self, name: str, queries: np.ndarray, k: int,
               selector_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, vector ids) of the k nearest vectors in one index."""
        index = self.index(name)
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        return faiss_index.search(index, q, k, faiss_index.IndexParams(), selector_ids=selector_ids)


def collection_folder(name_or_path: str, root: Path) -> Path:
    """A collection by name (a folder under ``root``) or by explicit path."""
    if os.sep in name_or_path or name_or_path.startswith("."):
        return Path(name_or_path)
    if not name_or_path or name_or_path in ("..",):
        raise CollectionError(f"invalid collection name {name_or_path!r}")
    return root / name_or_path
