"""A search node: a collection opened from its Milvus server alone, on any machine.

The indexer's machine holds the collection folder (catalog, users' feedback, manifest, writer
lock) and publishes each manifest into the Milvus server too (`backends/milvus_manifest.py`).
A `Replica` reads that published manifest, searches the Milvus collections it names and reads
what a result shows from their entities (`backends/milvus_view.py`), so it needs neither the
folder nor a network file system (SQLite over NFS is not safe). It stands where `Collection`
stands for a search: the planner and the engine use the same calls.

What it cannot do, it refuses with `ReadOnlyError`: indexing, removing, repairing (one writer,
on the machine with the folder), and everything that reads users' feedback (it lives in the
folder's database), so searches on a search node are not personalised and near-duplicates are
not collapsed (their signatures are in the catalog). It checks for a new manifest at most once
per `REFRESH_S`; vectors the indexer appends in place are searchable as soon as Milvus has them.
"""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path
from typing import Any

from crossmodal.errors import BackendError, CollectionError, ReadOnlyError
from crossmodal.items import Root
from crossmodal.storage.backends import milvus_manifest
from crossmodal.storage.backends.base import VectorIndex
from crossmodal.storage.backends.milvus_backend import MilvusBackend, is_server
from crossmodal.storage.backends.milvus_view import MilvusCatalogView
from crossmodal.storage.collection_checks import INDEX_KINDS
from crossmodal.storage.filters import Filters
from crossmodal.storage.manifest import ModelInfo, recorded_model, refuse_other_model

REFRESH_S = 1.0
"""How often, at most, a search asks Milvus whether a new manifest was published."""


class PublishedRoots:
    """The collection's roots as last published: where files may be served from."""

    def __init__(self) -> None:
        self.roots: list[Root] = []

    def all(self) -> list[Root]:
        return list(self.roots)


class Replica:
    """Open with `Replica(uri, prefix)`: the collection ``prefix`` on the Milvus server ``uri``."""

    read_only = True
    folder: Path | None = None
    feedback = None

    def __init__(self, uri: str, prefix: str, token: str | None = None) -> None:
        if not is_server(uri):
            raise BackendError(f"--milvus-uri {uri!r}: a search node needs a Milvus server (http://host:19530); a "
                               f"Milvus Lite file serves only the process that opened it")
        self.backend = MilvusBackend(None, None, {"name": "milvus", "uri": uri, "prefix": prefix}, token)
        self.prefix = prefix
        self.roots = PublishedRoots()
        self.calibrate: Any = None
        self._lock = threading.Lock()
        self._version: int | None = None
        self._checked_at = 0.0
        self._indexes: dict[str, VectorIndex] = {}
        self.manifest: dict[str, Any] = {}
        self.catalog: MilvusCatalogView | None = None
        self._secret = secrets.token_bytes(32)
        if not self._reload():
            raise CollectionError(f"Milvus at {uri} has no published collection {prefix!r}: run `crossmodal index` "
                                  f"on the machine that holds its folder (its prefix is in `crossmodal info`)")

    def _reload(self) -> bool:
        """Read the published manifest if it changed; True when a new one was taken."""
        with self.backend.errors("reading the published manifest"):
            found = milvus_manifest.read(self.backend.client, self.prefix, self._version)
        self._checked_at = time.monotonic()
        if found is None or found[1] is None:
            return False
        version, body = found
        manifest = body["manifest"]
        if self.manifest and manifest["model"] != self.manifest["model"]:
            raise CollectionError(f"collection {self.name!r} was rebuilt with another model; restart to use it")
        view = self.catalog or MilvusCatalogView(lambda: self.backend.client, self.backend.errors,
                                                 int(manifest["model"]["embed_dim"]))
        view.collection = str(manifest["indexes"].get("joint", {}).get("collection", ""))
        view.generation = version
        view.counts_published = {k: int(v) for k, v in (manifest.get("counts") or {}).items()}
        view.max_vector_id = int(manifest.get("max_vector_id", 0))
        self.manifest, self._indexes, self._version, self.catalog = manifest, {}, version, view
        self.roots.roots = [Root(str(r["path"]), bool(r["is_folder"])) for r in body.get("roots", [])]
        return True

    def refresh(self, now: bool = False) -> bool:
        """Take a newly published manifest (at most one look per REFRESH_S, unless ``now``: a search
        that failed because the indexer dropped the collections it used asks at once)."""
        if not now and time.monotonic() - self._checked_at < REFRESH_S:
            return False
        with self._lock:
            if not now and time.monotonic() - self._checked_at < REFRESH_S:
                return False
            return self._reload()

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.prefix)

    @property
    def model(self) -> ModelInfo:
        return recorded_model(self.manifest)

    def check_model(self, model: ModelInfo) -> None:
        refuse_other_model(self.name, self.model, model)

    @property
    def stale(self) -> bool:
        return False

    def index(self, name: str) -> VectorIndex:
        """The published index ``name``, opened once per manifest."""
        if name not in INDEX_KINDS:
            raise CollectionError(f"unknown index {name!r}; use one of {list(INDEX_KINDS)}")
        indexes = self._indexes
        if name not in indexes:
            entry = self.manifest["indexes"].get(name)
            if entry is None:
                raise CollectionError(f"collection {self.name!r} has no {name} index yet; run `crossmodal index`")
            if self.backend.outdated(entry):
                raise CollectionError(f"the {name} index of {self.name!r} predates search nodes: run `crossmodal "
                                      f"index` once on the machine that holds the collection to rewrite it")
            indexes[name] = self.backend.open(name, entry)
        return indexes[name]

    def search(self, name: str, queries: Any, k: int, selector_ids: Any = None,
               filters: Filters | None = None) -> tuple[Any, Any]:
        return self.index(name).search(queries, k, selector_ids=selector_ids, filters=filters)

    def health(self) -> list[str]:
        """What is wrong, one line each: an index that cannot be opened."""
        findings = []
        for name in self.manifest["indexes"]:
            try:
                self.index(name)
            except (BackendError, CollectionError) as exc:
                findings.append(str(exc))
        return findings

    def secret(self, name: str) -> bytes:
        """A per-process key: a search node keeps no users, so its cookies need not outlive it."""
        return self._secret

    def writer_lock(self, wait: float = 0.0) -> Any:
        raise ReadOnlyError(f"collection {self.name!r} is open as a search node (from Milvus at {self.backend.uri}): "
                            f"it cannot be changed here; run writes on the machine that holds its folder")

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Replica:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
