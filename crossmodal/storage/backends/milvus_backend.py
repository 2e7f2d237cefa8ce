"""The Milvus backend: one Milvus collection per index, in Milvus Lite or on a Milvus server.

The backend's ``uri`` is a Milvus server (``http://host:19530``; its token is given at run time
and never stored) or a Milvus Lite file, by default ``milvus.db`` inside the collection folder so
that a collection stays one folder. Every entity holds a vector (COSINE metric, primary key = the
catalog's vector id) and the fields the query filters read: the item's id, modality, uri and
number of uris, file time and metadata. A query's filters then become a Milvus filter expression
evaluated beside the vectors, instead of a list of allowed ids. A ``details`` field holds what a
result shows and what an exact filter check needs (vector kind, segment span and text, every uri
of the item, its metadata as stored): with it and the manifest published in the server
(`milvus_manifest.py`), a search node answers queries from Milvus alone (`storage/replica.py`).
The layout has a version (``FIELDS``) recorded in each manifest entry; an index written in an
older layout is rebuilt by the next sync.

That expression may let through more than the catalog's filter, never less (see
`milvus_filters.py`). Uris and file times change without new vectors (a touched file, a
duplicate linked to an item), so every sync compares a digest of each item's fields with the one
recorded at the last sync (``milvus-<prefix>.npz`` in the collection folder) and rewrites the
entities of the items that changed.

Milvus Lite serves one process at a time (it locks its file): a server process and an indexer
running beside it need a Milvus server.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import secrets
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from crossmodal.errors import BackendError
from crossmodal.settings import IndexSettings
from crossmodal.storage.backends import faiss_index, milvus_manifest
from crossmodal.storage.backends.base import IndexBackend, VectorIndex
from crossmodal.storage.backends.milvus_entities import FIELDS, details, entity_schema
from crossmodal.storage.backends.milvus_filters import canonical_fields
from crossmodal.storage.backends.milvus_index import METRIC, MilvusIndex
from crossmodal.storage.backends.milvus_view import MilvusCatalogView
from crossmodal.storage.catalog import Catalog

log = logging.getLogger(__name__)

LITE_FILE = "milvus.db"
TOKEN_ENV = "CROSSMODAL_MILVUS_TOKEN"
_URI_MAX_BYTES = 65_535
_INDEX_TYPES = {"flat": "FLAT", "hnsw": "HNSW", "ivf_flat": "IVF_FLAT", "ivf_pq": "IVF_PQ"}


def is_server(uri: str) -> bool:
    """A Milvus server URI (http, https, tcp, unix) rather than a Milvus Lite file."""
    return "://" in uri or uri.startswith("unix:")


def new_spec(uri: str, collection: str) -> dict[str, Any]:
    """The manifest's backend block for a new Milvus-backed collection: where, and the prefix that
    keeps this collection's Milvus collections apart from others' on the same server."""
    if uri and is_server(uri):
        if "@" in uri.split("://", 1)[-1].split("/", 1)[0]:
            raise BackendError("put Milvus credentials in --milvus-token (or CROSSMODAL_MILVUS_TOKEN), not in the "
                               "URI: the URI is written to the collection's manifest")
    elif uri:
        if not uri.endswith(".db"):
            raise BackendError(f"--milvus-uri {uri!r}: give a Milvus server (http://host:19530) or a Milvus Lite "
                               f"file ending in .db")
        uri = str(Path(uri).expanduser().resolve())
    name = re.sub(r"[^0-9A-Za-z_]", "_", collection)[:40]
    return {"name": "milvus", "uri": uri or LITE_FILE, "prefix": f"cm_{name}_{secrets.token_hex(4)}"}


@contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Silence libraries that log a traceback for an error this module reports itself."""
    handles = [logging.getLogger(name) for name in loggers]
    before = [h.disabled for h in handles]
    for h in handles:
        h.disabled = True
    try:
        yield
    finally:
        for h, was in zip(handles, before):
            h.disabled = was


class MilvusBackend(IndexBackend):
    """Milvus collections named ``<prefix>_<index>_<random>``, one per index; the manifest names
    the published ones, so a rebuild fills a new collection and drops the old one after publishing."""

    name = "milvus"
    removes_in_place = True
    counts_are_final = False

    def __init__(self, folder: Path | None, catalog: Catalog | MilvusCatalogView | None, spec: dict[str, Any],
                 token: str | None = None) -> None:
        """``folder`` and ``catalog`` are None for a search node (`replica.py`): a server, read only."""
        self.folder = folder
        self.catalog = catalog
        self.uri = str(spec.get("uri") or LITE_FILE)
        self.prefix = str(spec["prefix"])
        self._token = token
        self._client: MilvusClient | None = None
        self._lock = threading.Lock()
        self._infix_like: bool | None = None

    # Connection.
    @property
    def lite_path(self) -> Path | None:
        """The Milvus Lite file (relative uris are inside the collection folder); None for a server."""
        if is_server(self.uri):
            return None
        assert self.folder is not None, "a Milvus Lite file lives in a collection folder"
        return self.folder / self.uri

    @property
    def where(self) -> str:
        return self.uri if is_server(self.uri) else str(self.lite_path)

    @property
    def client(self) -> MilvusClient:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    @property
    def infix_like(self) -> bool:
        """Whether the server takes LIKE patterns with wildcards anywhere (Milvus Lite, Milvus 2.4
        and later); Milvus 2.3 refuses any but a prefix pattern (``ab%``)."""
        if self._infix_like is None:
            with self.errors("asking its version"):
                version = str(self.client.get_server_version())
            found = re.match(r"v?(\d+)\.(\d+)", version)
            self._infix_like = found is None or (int(found[1]), int(found[2])) >= (2, 4)
        return self._infix_like

    def ready(self) -> None:
        with self.errors("connecting"):
            self.client.list_collections()

    def _token_value(self) -> str:
        if self._token:
            return self._token
        if os.environ.get(TOKEN_ENV):
            return os.environ[TOKEN_ENV]
        from crossmodal.settings import load_settings

        return load_settings().index.milvus_token

    def _connect(self) -> MilvusClient:
        lite = self.lite_path
        if lite is None:
            try:
                with _quiet("pymilvus.decorators"):
                    return MilvusClient(uri=self.uri, token=self._token_value())
            except MilvusException as exc:
                raise BackendError(f"cannot reach Milvus at {self.uri}: {exc.message}") from None
        lite.parent.mkdir(parents=True, exist_ok=True)
        try:
            with _quiet("milvus_lite.server_manager", "pymilvus.decorators"):
                return MilvusClient(uri=str(lite))
        except MilvusException as exc:
            reason = exc.message
            if self._locked_elsewhere(lite):
                reason = ("another process has it open (Milvus Lite serves one process at a time: stop that "
                          "process, or use a Milvus server via `crossmodal migrate --to milvus --milvus-uri URI`)")
            raise BackendError(f"cannot open Milvus Lite file {lite}: {reason}") from None

    @staticmethod
    def _locked_elsewhere(lite: Path) -> bool:
        try:
            fd = os.open(lite / "LOCK", os.O_RDWR)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        except OSError:
            return True
        finally:
            os.close(fd)

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Milvus failures as BackendError naming the server or file and the operation."""
        try:
            with _quiet("pymilvus.decorators"):
                yield
        except MilvusException as exc:
            raise BackendError(f"Milvus at {self.where}: {what} failed: {exc.message}") from None

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # Building and publishing.
    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "uri": self.uri, "prefix": self.prefix}

    def plan(self, count: int, dim: int, settings: IndexSettings) -> tuple[str, dict[str, Any]]:
        """FLAT (exact) up to ``flat_max`` vectors under ``auto``, HNSW above; other kinds map to
        their Milvus index types with the FAISS backend's sizing rules."""
        kind = settings.kind
        if kind == "auto":
            kind = "flat" if count <= settings.flat_max else "hnsw"
        defaults = faiss_index.IndexParams()
        build: dict[str, Any] = {}
        search: dict[str, Any] = {}
        if kind == "hnsw":
            build = {"M": defaults.hnsw_m, "efConstruction": defaults.hnsw_ef_construction}
            search = {"ef": defaults.hnsw_ef_search}
        elif kind in ("ivf_flat", "ivf_pq"):
            nlist = max(1, faiss_index.default_nlist(count, min(count, defaults.train_sample)))
            build = {"nlist": nlist}
            if kind == "ivf_pq":
                build.update(m=faiss_index.default_pq_m(dim), nbits=8)
            search = {"nprobe": faiss_index.default_nprobe(nlist)}
        elif kind != "flat":
            raise BackendError(f"unknown index kind {kind!r}; use one of {['auto', *_INDEX_TYPES]}")
        return kind, {"index_type": _INDEX_TYPES[kind], "build": build, "search": search}

    def build(self, name: str, ids: np.ndarray, vectors: np.ndarray, kind: str,
              params: dict[str, Any]) -> MilvusIndex:
        collection = f"{self.prefix}_{name}_{secrets.token_hex(3)}"
        client = self.client
        with self.errors(f"creating collection {collection}"):
            index_params = client.prepare_index_params()
            index_params.add_index(field_name="vector", index_name="vector", index_type=params["index_type"],
                                   metric_type=METRIC, params=params["build"])
            client.create_collection(collection, schema=entity_schema(vectors.shape[1]), consistency_level="Strong")
            # Not waiting for the (empty) index: the wait asks for a timestamp Milvus Lite cannot give.
            client.create_index(collection, index_params, sync=False)
            client.load_collection(collection)
        index = MilvusIndex(self, collection, kind, params["search"], 0)
        index.write(ids, vectors, upsert=False)
        if self.lite_path is not None and kind != "flat":
            # Milvus Lite builds a segment's index in a background thread after a flush, searching
            # exhaustively until then (and that thread dies with a short `crossmodal index` run); a
            # reload builds it now, while no reader can see this collection yet.
            with self.errors(f"indexing {collection}"):
                client.flush(collection)
                client.release_collection(collection)
                client.load_collection(collection)
        return index

    def open(self, name: str, entry: dict[str, Any]) -> MilvusIndex:
        collection = entry["collection"]
        with self.errors(f"opening {collection}"):
            if not self.client.has_collection(collection):
                raise BackendError(f"Milvus at {self.where} has no collection {collection!r} (the {name} index); "
                                   f"rebuild it with `crossmodal index PATH... --rebuild`")
            self.client.load_collection(collection)
        return MilvusIndex(self, collection, entry["kind"], dict(entry.get("search_params") or {}),
                           int(entry["ntotal"]))

    def persist(self, name: str, index: VectorIndex, generation: int) -> dict[str, Any]:
        assert isinstance(index, MilvusIndex)
        if self.lite_path is not None:
            # A server has every acknowledged write in its log already; a flush there only seals
            # small segments early (2.5 s each on Milvus 2.3) and leaves compaction more to merge.
            with self.errors(f"flushing {index.collection}"):
                self.client.flush(index.collection)
        return {"collection": index.collection, "kind": index.kind, "ntotal": index.count(), "metric": METRIC,
                "search_params": index.search_params, "fields": FIELDS}

    def outdated(self, entry: dict[str, Any]) -> bool:
        """An index written in an older entity layout (no ``details``): rebuilt by the next sync."""
        return entry.get("fields") != FIELDS

    def reusable(self, entry: dict[str, Any], kind: str) -> bool:
        return super().reusable(entry, kind) and not self.outdated(entry)

    def publish(self, manifest: dict[str, Any], roots: list[dict[str, Any]]) -> None:
        """On a server, the manifest and roots for search nodes (`milvus_manifest.py`); a Milvus Lite
        file has no other reader."""
        if self.lite_path is None:
            with self.errors("publishing the manifest"):
                milvus_manifest.publish(self.client, self.prefix, manifest, roots)

    def discard(self, keep: dict[str, dict[str, Any]]) -> None:
        strays = self.strays(keep)
        with self.errors("dropping unused collections"):
            for collection in strays:
                self.client.drop_collection(collection)

    def strays(self, keep: dict[str, dict[str, Any]]) -> list[str]:
        names = {entry.get("collection") for entry in keep.values()}
        with self.errors("listing collections"):
            found = self.client.list_collections()
        own = milvus_manifest.collection_name(self.prefix)
        return sorted(c for c in found if c.startswith(self.prefix + "_") and c not in names and c != own)

    def describe(self, name: str, entry: dict[str, Any]) -> str:
        return f"Milvus collection {entry.get('collection')} at {self.where} (the {name} index)"

    def destroy(self) -> None:
        """Drop this collection's Milvus collections, and a Milvus Lite file left empty."""
        self.discard({})
        with self.errors("dropping the published manifest"):
            milvus_manifest.drop(self.client, self.prefix)
        self._digest_path.unlink(missing_ok=True)
        lite = self.lite_path
        if lite is None or self.client.list_collections():
            return
        self.close()
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(str(lite))
        shutil.rmtree(lite, ignore_errors=True)

    # Filter fields.
    def id_bound(self) -> int:
        return self.catalog.id_bound()

    def item_fields(self, item_ids: list[int] | None = None) -> dict[int, dict[str, Any]]:
        """The catalog's filter fields per item, with a uri too long for Milvus left out (such an
        item then passes every uri glob, which the planner's own check narrows)."""
        fields = self.catalog.filter_fields(item_ids, with_uris=True)
        for f in fields.values():
            if len(f["uri"].encode("utf-8")) > _URI_MAX_BYTES:
                f["uri"], f["n_uris"] = "", 0
        return fields

    def rows(self, ids: np.ndarray, vectors: np.ndarray) -> list[dict[str, Any]]:
        """Entities for vector ids still in the catalog: the vector, its item's filter fields and
        its details."""
        hits = self.catalog.describe(ids.tolist())
        fields = self.item_fields(sorted({h.item_id for h in hits.values()}))
        out = []
        for vid, vector in zip(ids, vectors):
            hit = hits.get(int(vid))
            if hit is not None:
                item = dict(fields[hit.item_id])
                uris = item.pop("uris")
                out.append({"id": int(vid), "vector": vector, **item, "details": details(hit, uris)})
        return out

    @property
    def _digest_path(self) -> Path:
        return self.folder / f"milvus-{self.prefix}.npz"

    def _digests(self) -> tuple[np.ndarray, np.ndarray]:
        fields = self.item_fields()
        ids = np.array(sorted(fields), dtype=np.int64)
        digests = np.fromiter(
            (int.from_bytes(hashlib.blake2b(canonical_fields(fields[int(i)]), digest_size=8).digest(), "little")
             for i in ids),
            dtype=np.uint64, count=ids.size)
        return ids, digests

    def sync_attributes(self, entries: dict[str, dict[str, Any]], fresh: set[str]) -> None:
        """Rewrite the entities of items whose filter fields changed since the last sync, then
        record the digests. Fields change without new vectors when a file is touched, a duplicate
        is linked to an item, or one of an item's uris is removed."""
        ids, digests = self._digests()
        path = self._digest_path
        stale = {name: entry for name, entry in entries.items() if name not in fresh}
        if stale and ids.size:
            if path.is_file():
                with np.load(path, allow_pickle=False) as previous:
                    common, mine, theirs = np.intersect1d(ids, previous["ids"], return_indices=True)
                    changed = common[digests[mine] != previous["digests"][theirs]]
            else:
                changed = ids
            if changed.size:
                log.info("refreshing filter fields of %d item(s) in Milvus", changed.size)
                vector_ids = self.catalog.vectors_of_items(changed.tolist())
                for name, entry in stale.items():
                    index = self.open(name, entry)
                    held = index.existing(vector_ids)
                    if held:
                        stored = self.catalog.vectors_by_id(held)
                        index.write(np.array(held, dtype=np.int64), np.stack([stored[i] for i in held]), upsert=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, ids=ids, digests=digests)
        os.replace(tmp, path)
