"""The Milvus backend: one Milvus collection per index, in Milvus Lite or on a Milvus server.

The backend's ``uri`` is a Milvus server (``http://host:19530``; its token is given at run time
and never stored) or a Milvus Lite file, by default ``milvus.db`` inside the collection folder so
that a collection stays one folder. Every entity holds a vector (COSINE metric, primary key = the
catalog's vector id) and the fields the query filters read: the item's id, modality, uri and
number of uris, file time and metadata. A query's filters then become a Milvus filter expression
evaluated beside the vectors, instead of a list of allowed ids.

That expression may let through more than the catalog's filter (the planner checks every
candidate against the catalog and drops extras) but never less, since a miss cannot be recovered:

* a uri glob becomes LIKE with ``*`` -> ``%`` and every other special character -> ``_``, and an
  item with several uris always passes it (only its first uri is stored);
* uris and file times change without new vectors (a touched file, a duplicate linked to an item),
  so every sync compares a digest of each item's fields with the one recorded at the last sync
  (``milvus-<prefix>.npz`` in the collection folder) and rewrites the entities of the items that changed.

Milvus Lite serves one process at a time (it locks its file): a server process and an indexer
running beside it need a Milvus server.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
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
from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import MilvusException

from crossmodal.errors import BackendError
from crossmodal.settings import IndexSettings
from crossmodal.storage.backends import faiss_index
from crossmodal.storage.backends.base import IndexBackend, VectorIndex
from crossmodal.storage.catalog import Catalog
from crossmodal.storage.filters import Filters

log = logging.getLogger(__name__)

LITE_FILE = "milvus.db"
TOKEN_ENV = "CROSSMODAL_MILVUS_TOKEN"
METRIC = "COSINE"
MAX_TOPK = 16_384
"""Milvus refuses larger search limits and query windows."""
_WRITE_BATCH = 1_000
_ID_BATCH = 10_000
_SQL_CHUNK = 500
_URI_MAX_BYTES = 65_535
_INDEX_TYPES = {"flat": "FLAT", "hnsw": "HNSW", "ivf_flat": "IVF_FLAT", "ivf_pq": "IVF_PQ"}
_MISSING_SCORE = -np.inf


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


def glob_to_like(pattern: str) -> str:
    """A LIKE pattern matching at least every string the shell-style glob matches: ``*`` is ``%``,
    and ``?``, a ``[...]`` class and any character LIKE treats specially become ``_``."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if not out or out[-1] != "%":
                out.append("%")
        elif ch == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1:i + 2] in ("^", "!", "]") else i + 1)
            out.append("_")
            if end != -1:
                i = end
        elif ch in "?%_\\":
            out.append("_")
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def filter_expression(filters: Filters | None) -> str | None:
    """The Milvus filter expression for ``filters`` (None when they are empty); see the module
    docstring for why it may pass more than the catalog does, never less."""
    if filters is None or not filters.active:
        return None
    clauses = []
    if filters.modalities:
        clauses.append(f"modality in [{', '.join(_literal(m) for m in filters.modalities)}]")
    if filters.uri_glob:
        clauses.append(f"(n_uris != 1 or uri like {_literal(glob_to_like(filters.uri_glob))})")
    for key, value in filters.meta.items():
        clauses.append(f"meta[{_literal(str(key))}] == {_literal(str(value))}")
    if filters.after is not None and np.isfinite(filters.after):
        clauses.append(f"mtime >= {float(filters.after)!r}")
    if filters.before is not None and np.isfinite(filters.before):
        clauses.append(f"mtime <= {float(filters.before)!r}")
    return " and ".join(clauses) or None


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


def _canonical(fields: dict[str, Any]) -> bytes:
    """One item's filter fields as bytes that change exactly when a field does."""
    return repr((fields["modality"], fields["uri"], fields["n_uris"], fields["mtime"],
                 sorted(fields["meta"].items()))).encode("utf-8")


def _chunks(values: list[int], size: int) -> Iterator[list[int]]:
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
        for start in range(0, ids.shape[0], _WRITE_BATCH):
            rows = self.backend.rows(ids[start:start + _WRITE_BATCH], vectors[start:start + _WRITE_BATCH])
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
        for part in _chunks(drop, _ID_BATCH):
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

    def existing(self, ids: list[int]) -> list[int]:
        """Which of ``ids`` this collection holds."""
        found: list[int] = []
        for part in _chunks(ids, MAX_TOPK):
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
        scores = np.full((q.shape[0], int(k)), _MISSING_SCORE, dtype=np.float32)
        labels = np.full((q.shape[0], int(k)), -1, dtype=np.int64)
        clauses = []
        expression = filter_expression(filters)
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
                consistency_level="Strong")
        for row, hits in enumerate(result):
            for col, hit in enumerate(hits):
                labels[row, col] = int(hit["id"])
                scores[row, col] = float(hit["distance"])
        return scores, labels


class MilvusBackend(IndexBackend):
    """Milvus collections named ``<prefix>_<index>_<random>``, one per index; the manifest names
    the published ones, so a rebuild fills a new collection and drops the old one after publishing."""

    name = "milvus"
    removes_in_place = True

    def __init__(self, folder: Path, catalog: Catalog, spec: dict[str, Any], token: str | None = None) -> None:
        self.folder = folder
        self.catalog = catalog
        self.uri = str(spec.get("uri") or LITE_FILE)
        self.prefix = str(spec["prefix"])
        self._token = token
        self._client: MilvusClient | None = None
        self._lock = threading.Lock()

    # Connection.
    @property
    def lite_path(self) -> Path | None:
        """The Milvus Lite file (relative uris are inside the collection folder); None for a server."""
        return None if is_server(self.uri) else self.folder / self.uri

    @property
    def where(self) -> str:
        return self.uri if is_server(self.uri) else str(self.lite_path)

    @property
    def client(self) -> MilvusClient:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

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

    def _schema(self, dim: int) -> Any:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("item_id", DataType.INT64)
        schema.add_field("modality", DataType.VARCHAR, max_length=16)
        schema.add_field("uri", DataType.VARCHAR, max_length=_URI_MAX_BYTES)
        schema.add_field("n_uris", DataType.INT64)
        schema.add_field("mtime", DataType.DOUBLE)
        schema.add_field("meta", DataType.JSON)
        return schema

    def build(self, name: str, ids: np.ndarray, vectors: np.ndarray, kind: str,
              params: dict[str, Any]) -> MilvusIndex:
        collection = f"{self.prefix}_{name}_{secrets.token_hex(3)}"
        client = self.client
        with self.errors(f"creating collection {collection}"):
            index_params = client.prepare_index_params()
            index_params.add_index(field_name="vector", index_name="vector", index_type=params["index_type"],
                                   metric_type=METRIC, params=params["build"])
            client.create_collection(collection, schema=self._schema(vectors.shape[1]), consistency_level="Strong")
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
        with self.errors(f"flushing {index.collection}"):
            self.client.flush(index.collection)
        return {"collection": index.collection, "kind": index.kind, "ntotal": index.count(), "metric": METRIC,
                "search_params": index.search_params}

    def discard(self, keep: dict[str, dict[str, Any]]) -> None:
        names = {entry.get("collection") for entry in keep.values()}
        with self.errors("dropping unused collections"):
            for collection in self.client.list_collections():
                if collection.startswith(self.prefix + "_") and collection not in names:
                    self.client.drop_collection(collection)

    def destroy(self) -> None:
        """Drop this collection's Milvus collections, and a Milvus Lite file left empty."""
        self.discard({})
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
        """The largest vector id the catalog ever handed out (ids are never reused)."""
        row = self.catalog.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'vectors'").fetchone()
        return int(row[0]) if row else 0

    def item_fields(self, item_ids: list[int] | None = None) -> dict[int, dict[str, Any]]:
        """Filter fields per item, as the catalog's `filter_vector_ids` sees them: modality, first
        uri and uri count, file time (newest file mtime in seconds, else when it was added) and
        metadata as text. All items when ``item_ids`` is None."""
        db = self.catalog.db
        sql = ("SELECT i.id, i.modality, i.added_at, MIN(f.uri), COUNT(f.uri), MAX(f.mtime_ns) "
               "FROM items i LEFT JOIN files f ON f.item_id = i.id")
        if item_ids is None:
            rows = db.execute(sql + " GROUP BY i.id").fetchall()
            metas = db.execute("SELECT item_id, key, value FROM item_meta").fetchall()
        else:
            rows, metas = [], []
            for part in _chunks(item_ids, _SQL_CHUNK):
                marks = ",".join("?" * len(part))
                rows += db.execute(sql + f" WHERE i.id IN ({marks}) GROUP BY i.id", part).fetchall()
                metas += db.execute(f"SELECT item_id, key, value FROM item_meta WHERE item_id IN ({marks})",
                                    part).fetchall()
        out: dict[int, dict[str, Any]] = {}
        for item_id, modality, added_at, uri, n_uris, mtime_ns in rows:
            uri = uri or ""
            if len(uri.encode("utf-8")) > _URI_MAX_BYTES:
                uri, n_uris = "", 0
            out[int(item_id)] = {"item_id": int(item_id), "modality": modality, "uri": uri, "n_uris": int(n_uris),
                                 "mtime": float(added_at) if mtime_ns is None else mtime_ns / 1e9, "meta": {}}
        for item_id, key, value in metas:
            if int(item_id) in out:
                out[int(item_id)]["meta"][key] = value
        return out

    def rows(self, ids: np.ndarray, vectors: np.ndarray) -> list[dict[str, Any]]:
        """Entities for vector ids still in the catalog: the vector and its item's filter fields."""
        owners: dict[int, int] = {}
        for part in _chunks([int(i) for i in ids], _SQL_CHUNK):
            owners.update(self.catalog.db.execute(
                f"SELECT id, item_id FROM vectors WHERE id IN ({','.join('?' * len(part))})", part).fetchall())
        fields = self.item_fields(sorted(set(owners.values())))
        out = []
        for vid, vector in zip(ids, vectors):
            item = owners.get(int(vid))
            if item is not None:
                out.append({"id": int(vid), "vector": vector, **fields[item]})
        return out

    @property
    def _digest_path(self) -> Path:
        return self.folder / f"milvus-{self.prefix}.npz"

    def _digests(self) -> tuple[np.ndarray, np.ndarray]:
        fields = self.item_fields()
        ids = np.array(sorted(fields), dtype=np.int64)
        digests = np.fromiter(
            (int.from_bytes(hashlib.blake2b(_canonical(fields[int(i)]), digest_size=8).digest(), "little")
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
                vector_ids = self._vectors_of(changed.tolist())
                for name, entry in stale.items():
                    index = self.open(name, entry)
                    held = index.existing(vector_ids)
                    if held:
                        stored = self.catalog.vectors_by_id(held)
                        index.write(np.array(held, dtype=np.int64), np.stack([stored[i] for i in held]), upsert=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, ids=ids, digests=digests)
        os.replace(tmp, path)

    def _vectors_of(self, item_ids: list[int]) -> list[int]:
        out: list[int] = []
        for part in _chunks(item_ids, _SQL_CHUNK):
            out += [int(r[0]) for r in self.catalog.db.execute(
                f"SELECT id FROM vectors WHERE item_id IN ({','.join('?' * len(part))})", part)]
        return out
