"""A collection on disk: manifest, catalog and one index per modality plus the joint one.

The indexes live in the collection's backend (see `backends/base.py`): FAISS files in the folder, or
Milvus collections (Milvus Lite in the folder, or a Milvus server). The manifest names the
backend, so every command that opens the collection uses it with no flag.

The catalog holds every vector, so indexes are derived data. New ones are written under new
names (generation-numbered files, fresh Milvus collections), then the manifest is replaced
atomically to point at them, then old ones are deleted: a reader (or a crash) always sees one
consistent set. Appends (and, in Milvus, deletions) go to the published index in place; that is
safe for readers because the planner keeps only candidates the catalog still holds.

The catalog (content) and the feedback store (users) share the collection's database file.

The manifest also carries what is derived from the published indexes as a whole: the score
calibration, a plain dict computed by `calibrate` (set by the layer above, which knows how) and
published in the same atomic write as the indexes it describes.

Each manifest entry records what its index holds (vector kinds, dimension, count; for a FAISS
file its size and SHA-256). Opening an index checks the cheap facts (`index_checks.py`) and
refuses a damaged one, naming it and the fix; writers rebuild damaged indexes from the catalog
and delete what killed runs left behind (under the writer lock).

Longer than 400 lines because publishing (bring each index up to the catalog, then swap the
manifest atomically) must stay in one class with the state it swaps; the checks live in
`index_checks.py` and the backends in `backends/`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal import __version__
from crossmodal.errors import BackendError, CollectionError, CrossmodalError, IndexFileError
from crossmodal.settings import IndexSettings
from crossmodal.storage.backends import faiss_search
from crossmodal.storage.backends.base import IndexBackend, VectorIndex
from crossmodal.storage.backends.faiss_backend import FaissBackend
from crossmodal.storage.catalog import Catalog
from crossmodal.storage.collection_checks import CATALOG, INDEX_KINDS, CollectionChecks, refuse_orphan_catalog
from crossmodal.storage.database import collection_option
from crossmodal.storage.feedback import FeedbackStore
from crossmodal.storage.filters import Filters
from crossmodal.storage.locks import writer_lock
from crossmodal.storage.manifest import (
    MANIFEST,
    ModelInfo,
    backend_spec,
    milvus_module,
    new_manifest,
    read_manifest,
    recorded_model,
    refuse_other_model,
    same_place,
    write_manifest,
)
from crossmodal.storage.roots import RootStore
from crossmodal.storage.schema import open_database

log = logging.getLogger(__name__)

Calibrator = Callable[[Catalog, Mapping[str, VectorIndex], Mapping[str, Any] | None], dict[str, Any]]
"""(catalog, the published indexes, the stored calibration) -> the calibration to store (the
stored one while it still holds)."""


class Collection(CollectionChecks):
    """Open with `Collection.open` (existing) or `Collection.create`; close when done."""

    def __init__(self, folder: Path, manifest: dict[str, Any], milvus_token: str | None = None,
                 create_catalog: bool = False) -> None:
        self.folder = folder
        self.manifest = manifest
        self.database = open_database(folder / CATALOG, create=create_catalog)
        self.catalog = Catalog(self.database)
        self.catalog.dim = int(manifest["model"]["embed_dim"])
        self.feedback = FeedbackStore(self.database)
        self.roots = RootStore(self.database)
        self._indexes: dict[str, VectorIndex] = {}
        self._manifest_stamp = self._stamp()
        self._refresh_lock = threading.Lock()
        self._backend_lock = threading.Lock()
        self._milvus_token = milvus_token
        self._backend: IndexBackend | None = None
        self._retired: list[IndexBackend] = []
        self._faults: dict[str, str] = {}
        """Index name -> what is wrong with its published index, found when it was opened."""
        self.calibrate: Calibrator | None = None
        """Computes the score calibration published with the indexes (None: none is published)."""
        if backend_spec(manifest)["name"] == "faiss":  # a stat per file; a Milvus entry has nothing this cheap
            self._faults = {name: fault for name, entry in manifest["indexes"].items()
                            if (fault := self.backend.entry_fault(name, entry))}

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
            manifest = read_manifest(self.folder)
            if manifest["model"] != self.manifest["model"]:
                raise CollectionError(f"collection {self.name!r} was rebuilt with another model; restart to use it")
            backend = self.backend
            if backend_spec(manifest) != backend_spec(self.manifest):
                backend = self._make_backend(backend_spec(manifest))
            loaded: dict[str, VectorIndex] = {}
            faults: dict[str, str] = {}
            for name, entry in manifest["indexes"].items():
                index, fault = self._checked_open(backend, manifest, name, entry)
                if index is not None:
                    loaded[name] = index
                else:
                    faults[name] = fault or "unusable"
            if backend is not self._backend:
                # Threads may still be searching through the old backend: close it with the collection.
                self._retired.append(self.backend)
                self._backend = backend
            self.manifest, self._indexes, self._faults, self._manifest_stamp = manifest, loaded, faults, stamp
        return True

    # Opening.
    @classmethod
    def open(cls, folder: str | Path, milvus_token: str | None = None) -> Collection:
        """An existing collection; ``milvus_token`` authenticates to a Milvus server (else
        CROSSMODAL_MILVUS_TOKEN or the settings file's ``[index] milvus_token``)."""
        folder = Path(folder)
        return cls(folder, read_manifest(folder), milvus_token)

    @classmethod
    def create(cls, folder: str | Path, model: ModelInfo, backend: dict[str, Any] | None = None,
               milvus_token: str | None = None) -> Collection:
        """A new, empty collection bound to ``model``, its indexes in ``backend`` (a spec from
        `new_backend_spec`; default FAISS)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        refuse_orphan_catalog(folder)
        manifest = new_manifest(folder.name, model, backend or {"name": "faiss"})
        collection = cls(folder, manifest, milvus_token, create_catalog=True)
        write_manifest(folder, manifest)
        return collection

    def close(self) -> None:
        for backend in [*self._retired, self._backend]:
            if backend is not None:
                backend.close()
        self._retired.clear()
        self.database.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def model(self) -> ModelInfo:
        return recorded_model(self.manifest)

    def check_model(self, model: ModelInfo) -> None:
        """Refuse to mix vectors of two models in one collection."""
        refuse_other_model(self.name, self.model, model)

    @property
    def stale(self) -> bool:
        """True when the catalog holds changes the index files do not (an interrupted run)."""
        return self.manifest.get("catalog_generation") != self.catalog.generation

    def writer_lock(self, wait: float = 0.0) -> AbstractContextManager[None]:
        """One writer at a time per collection (see `locks.py`); readers are never blocked."""
        return writer_lock(self.folder, wait)

    # Backend and indexes.
    @property
    def backend(self) -> IndexBackend:
        """The backend the manifest names, connected on first use."""
        with self._backend_lock:
            if self._backend is None:
                self._backend = self._make_backend(backend_spec(self.manifest))
            return self._backend

    def _make_backend(self, spec: dict[str, Any]) -> IndexBackend:
        if spec["name"] == "faiss":
            return FaissBackend(self.folder)
        return milvus_module().MilvusBackend(self.folder, self.catalog, spec, self._milvus_token)

    def sync_indexes(self, settings: IndexSettings, force: bool = False, progress=None,
                     rebuild: Iterable[str] = ()) -> dict[str, Any]:
        """Bring the indexes up to the catalog: append new vectors where nothing was removed
        and the index kind still fits (Milvus also deletes removed ones in place), rebuild
        otherwise; then publish a new manifest. The caller holds the writer lock: what killed
        runs left behind is deleted first, and an index that fails its checks (for a FAISS file,
        its SHA-256 too), or that ``rebuild`` names, is rebuilt from the catalog."""
        self.remove_leftovers()
        generation = self.catalog.generation
        damaged = self.index_faults(full=True)
        rebuild = set(rebuild)
        for name, fault in damaged.items():
            if name not in rebuild:
                where = self.backend.describe(name, self.manifest["indexes"][name])
                log.warning("rebuilding %s from the catalog: %s", where, fault)
        rebuild |= set(damaged)
        rebuild |= {name for name, entry in self.manifest["indexes"].items() if self.backend.outdated(entry)}
        if not force and not rebuild and not self.stale and all(k in self.manifest["indexes"] for k in INDEX_KINDS):
            self.backend.sync_attributes(self.manifest["indexes"], set())
            if self.calibrate is not None and "calibration" not in self.manifest:  # an older collection
                calibration = self._calibration({name: self.index(name) for name in self.manifest["indexes"]})
                if calibration is not None:
                    self.manifest = {**self.manifest, "calibration": calibration}
                    write_manifest(self.folder, self.manifest)
                    self._manifest_stamp = self._stamp()
            self.backend.publish(self.manifest, self._root_dicts())  # roots may have grown
            return self.manifest
        previous_threads = faiss_search.set_threads(settings.build_threads)
        try:
            return self._publish(self.backend, settings, generation, force, progress, rebuild)
        finally:
            faiss_search.set_threads(previous_threads)

    def migrate(self, spec: dict[str, Any], settings: IndexSettings, progress=None) -> dict[str, Any]:
        """Move every index to the backend ``spec`` names, copying vectors from the catalog (no
        re-embedding); the old backend's indexes are deleted once the new manifest is published.
        Migrating to where the indexes already are rebuilds them there."""
        old = self.backend
        previous_threads = faiss_search.set_threads(settings.build_threads)
        try:
            if same_place(spec, backend_spec(self.manifest)):
                return self._publish(old, settings, self.catalog.generation, True, progress)
            target = self._make_backend(spec)
            try:
                manifest = self._publish(target, settings, self.catalog.generation, True, progress)
            except BaseException:
                target.close()
                raise
        finally:
            faiss_search.set_threads(previous_threads)
        self._backend = target
        try:
            old.destroy()
        except BackendError as exc:
            log.warning("the collection now uses %s, but its old indexes could not be deleted: %s",
                        target.name, exc)
        old.close()
        return manifest

    def _publish(self, backend: IndexBackend, settings: IndexSettings, generation: int, force: bool,
                 progress, rebuild: set[str] | None = None) -> dict[str, Any]:
        same = backend is self._backend
        old = self.manifest.get("indexes", {}) if same else {}
        old_max = int(self.manifest.get("max_vector_id", 0))
        new_max = self.catalog.max_vector_id()
        dim = self.model.embed_dim
        written: dict[str, Any] = {}
        loaded: dict[str, VectorIndex] = {}
        fresh: set[str] = set()
        for name, kinds in INDEX_KINDS.items():
            count = self.catalog.vector_count(kinds)
            wanted, params = backend.plan(count, dim, settings)
            entry = old.get(name)
            index = None
            if not force and entry is not None and name not in (rebuild or ()) and backend.reusable(entry, wanted):
                index = self._bring_up_to_date(backend, name, entry, kinds, old_max, count)
            rebuilt = index is None
            if rebuilt:
                ids, vectors = self.catalog.vectors(kinds, dim)
                index = backend.build(name, ids, vectors, wanted, params)
                fresh.add(name)
            kind = index.kind
            recall = entry.get("recall@10") if entry and not rebuilt else None
            if kind != "flat" and (rebuilt or recall is None) and index.ntotal:
                ids, vectors = self.catalog.vectors(kinds, dim)
                recall = index.recall(ids, vectors, settings.recall_sample)
            published = backend.persist(name, index, generation)
            written[name] = {**published, "kinds": list(kinds), "dim": dim,
                             "recall@10": None if kind == "flat" else recall}
            loaded[name] = index
            if progress is not None:
                progress(name, written[name])
        backend.sync_attributes(written, fresh)
        manifest = dict(self.manifest)
        manifest.update(backend=backend.spec(), indexes=written, catalog_generation=generation, max_vector_id=new_max,
                        counts=self.catalog.counts(), updated_at=time.time(), crossmodal_version=__version__)
        if (calibration := self._calibration(loaded)) is not None:
            manifest["calibration"] = calibration
        write_manifest(self.folder, manifest)
        self.manifest = manifest
        self._indexes = loaded
        self._faults = {}
        self._manifest_stamp = self._stamp()
        backend.publish(manifest, self._root_dicts())  # before the old indexes go: search nodes still name them
        backend.discard(written)
        return manifest

    def _root_dicts(self) -> list[dict[str, Any]]:
        return [{"path": r.path, "is_folder": r.is_folder} for r in self.roots.all()]

    def _calibration(self, indexes: Mapping[str, VectorIndex]) -> dict[str, Any] | None:
        """The calibration to publish with ``indexes``; None without a calibrator, or when it fails
        (the indexes are published all the same, and searches compute it when first used)."""
        if self.calibrate is None:
            return None
        try:
            return self.calibrate(self.catalog, indexes, self.manifest.get("calibration"))
        except Exception as exc:  # derived data must never stop a publish
            log.warning("score calibration not published (%s); searches will compute it", exc)
            return None

    def _bring_up_to_date(self, backend: IndexBackend, name: str, entry: dict[str, Any], kinds: tuple[str, ...],
                          old_max: int, count: int) -> VectorIndex | None:
        """The published index with the catalog's new vectors added (and, where the backend removes
        in place, its removed ones deleted); None when it must be rebuilt instead."""
        added_ids, added = self.catalog.vectors_above(old_max, kinds)
        if int(entry["ntotal"]) + len(added_ids) != count and not backend.removes_in_place:
            return None
        try:
            index = backend.open(name, entry)
        except CrossmodalError as exc:
            log.warning("rebuilding the %s index: %s", name, exc)
            return None
        if len(added_ids):
            index.add(added_ids, added)
        if index.count() != count:
            index.remove(np.setdiff1d(index.stored_ids(), self.vector_ids(kinds)))
            if index.count() != count:
                return None
        return index

    def vector_ids(self, kinds: tuple[str, ...]) -> np.ndarray:
        """Every catalog vector id of these kinds (any order), damaged ones included."""
        rows = self.catalog.db.execute(
            f"SELECT id FROM vectors WHERE kind IN ({','.join('?' * len(kinds))})", kinds).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def drop_indexes(self) -> None:
        """Delete every index of this collection from its backend (before a rebuild from scratch)."""
        self.backend.destroy()
        self._indexes = {}

    def index(self, name: str) -> VectorIndex:
        """The open index ``name`` (text, image, audio or joint), opened once."""
        if name not in INDEX_KINDS:
            raise CollectionError(f"unknown index {name!r}; use one of {list(INDEX_KINDS)}")
        if name not in self._indexes:
            entry = self.manifest["indexes"].get(name)
            if entry is None:
                raise CollectionError(f"collection {self.name!r} has no {name} index yet; run `crossmodal index`")
            index, fault = None, self._faults.get(name)
            if fault is None:
                index, fault = self._checked_open(self.backend, self.manifest, name, entry)
            if index is None:
                self._faults[name] = fault or "unusable"
                raise IndexFileError(self.backend.describe(name, entry),
                                     f"{fault}; searching it is refused until it is rebuilt from the catalog: run "
                                     f"`crossmodal check --repair {collection_option(self.folder)}`")
            self._indexes[name] = index
        return self._indexes[name]

    def search(self, name: str, queries: np.ndarray, k: int, selector_ids: np.ndarray | None = None,
               filters: Filters | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, vector ids) of the k nearest vectors in one index, restricted to ``selector_ids``
        and, where the backend evaluates them itself, ``filters``."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        return self.index(name).search(q, k, selector_ids=selector_ids, filters=filters)


def clear_collection(folder: Path, milvus_token: str | None = None) -> None:
    """Delete a collection's indexes (in its backend), manifest and catalog. The caller holds
    the writer lock, so its file stays (deleting it would let a second writer lock a new file).
    A damaged collection is cleared all the same."""
    try:
        old = Collection.open(folder, milvus_token=milvus_token)
    except CrossmodalError:
        old = None  # a damaged manifest or catalog: only files are left to delete
    if old is not None:
        with old:
            old.drop_indexes()
    for path in [folder / MANIFEST, *folder.glob("*.faiss"), *folder.glob(CATALOG + "*")]:
        path.unlink(missing_ok=True)


def collection_folder(name_or_path: str, root: Path) -> Path:
    """A collection by name (a folder under ``root``) or by explicit path."""
    if os.sep in name_or_path or name_or_path.startswith("."):
        return Path(name_or_path)
    if not name_or_path or name_or_path in ("..",):
        raise CollectionError(f"invalid collection name {name_or_path!r}")
    return root / name_or_path
