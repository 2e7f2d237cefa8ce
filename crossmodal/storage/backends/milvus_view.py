"""What a search node reads instead of the catalog: the entities of a collection's joint Milvus
collection, which holds every vector with its item's fields and ``details`` (`milvus_entities.py`).

It answers the catalog calls a search makes — each candidate's item and vector, what a result
shows, whether a candidate passes the query's filters, an item as the API shows it — from the
Milvus server alone, so the catalog (SQLite, in a folder on the indexer's machine) need not be
shared. Filters are checked exactly as the catalog checks them: a uri glob by SQLite's own GLOB
(an in-memory database, so the rules are the same to the character), metadata as text, the file
time against the same number. Milvus holds only what the indexer wrote last, so a vector the
indexer has not reached yet is absent here, as it is absent from the search.

One query asks about the same candidates up to three times (do they pass the filters, their
vectors, what the chosen ones show), so each read fetches everything a query needs of those
entities and the thread keeps it for REUSE_S: one round trip to the server instead of three.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from crossmodal.storage.backends.milvus_index import READ
from crossmodal.storage.catalog import VectorHit
from crossmodal.storage.filters import Filters

GET_BATCH = 1_000
REUSE_S = 1.0
_SHOWN = ["item_id", "modality", "uri", "n_uris", "mtime", "meta", "details"]
_ALL = [*_SHOWN, "vector"]
_local = threading.local()


def glob_matches(text: str, pattern: str) -> bool:
    """``text GLOB pattern`` evaluated by SQLite, as the catalog's uri filter is."""
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = sqlite3.connect(":memory:", check_same_thread=True)
    return bool(conn.execute("SELECT ? GLOB ?", (text, pattern)).fetchone()[0])


def passes(entity: dict[str, Any], filters: Filters) -> bool:
    """Whether the item an entity belongs to passes ``filters``, as `Catalog.filter_vector_ids` decides."""
    if filters.modalities and entity["modality"] not in filters.modalities:
        return False
    if filters.uri_glob:
        details = entity.get("details") or {}
        uris = details.get("uris") or [entity["uri"]]
        if not any(glob_matches(u, filters.uri_glob) for u in uris) and details.get("uris_complete", True):
            return False
    meta = entity.get("meta") or {}
    if any(meta.get(str(k)) != str(v) for k, v in filters.meta.items()):
        return False
    if filters.after is not None and not entity["mtime"] >= float(filters.after):
        return False
    return filters.before is None or entity["mtime"] <= float(filters.before)


class MilvusCatalogView:
    """The catalog calls of a search, answered from the published joint Milvus collection."""

    def __init__(self, client: Callable[[], Any], errors: Callable[[str], Any], dim: int) -> None:
        self._client = client
        self._errors = errors
        self.dim = dim
        self.collection = ""
        """The joint index's Milvus collection, set by the replica from the manifest."""
        self.generation = 0
        """The published manifest's version: what the planner keys its caches on."""
        self.counts_published: dict[str, int] = {}
        self.max_vector_id = 0
        """The largest vector id when the manifest was published (appends since may be larger)."""

    def id_bound(self) -> int:
        return self.max_vector_id

    def _entities(self, vector_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Every field of the entities ``vector_ids`` (absent ones left out), from this thread's last
        read when it asked for all of them less than REUSE_S ago."""
        ids = sorted({int(v) for v in vector_ids})
        last = getattr(_local, "last", None)
        if last is not None and last[0] == self.collection and time.monotonic() - last[1] < REUSE_S \
                and last[2].issuperset(ids):
            return {i: last[3][i] for i in ids if i in last[3]}
        out: dict[int, dict[str, Any]] = {}
        for start in range(0, len(ids), GET_BATCH):
            with self._errors(f"reading {self.collection}"):
                rows = self._client().get(self.collection, ids=ids[start:start + GET_BATCH], output_fields=_ALL,
                                          consistency_level=READ)
            out.update((int(r["id"]), r) for r in rows)
        _local.last = (self.collection, time.monotonic(), set(ids), out)
        return out

    def vector_owners(self, vector_ids: Sequence[int]) -> dict[int, tuple[int, np.ndarray]]:
        return {vid: (int(e["item_id"]), np.asarray(e["vector"], dtype=np.float32))
                for vid, e in self._entities(vector_ids).items()}

    def vectors_by_id(self, vector_ids: Sequence[int]) -> dict[int, np.ndarray]:
        return {vid: owner[1] for vid, owner in self.vector_owners(vector_ids).items()}

    def vector_items(self, vector_ids: Sequence[int]) -> dict[int, int]:
        return {vid: int(e["item_id"]) for vid, e in self._entities(vector_ids).items()}

    def passing_ids(self, vector_ids: Sequence[int], filters: Filters) -> np.ndarray:
        """The ids among ``vector_ids`` whose items pass ``filters`` (sorted int64)."""
        found = self._entities(vector_ids)
        return np.array(sorted(v for v, e in found.items() if passes(e, filters)), dtype=np.int64)

    def describe(self, vector_ids: Sequence[int]) -> dict[int, VectorHit]:
        out: dict[int, VectorHit] = {}
        for vid, e in self._entities(vector_ids).items():
            d = e.get("details") or {}
            meta = d.get("item_meta")
            out[vid] = VectorHit(vid, int(e["item_id"]), str(d.get("kind", e["modality"])), e["uri"], e["modality"],
                                 d.get("start"), d.get("end"), d.get("text"), dict(e["meta"] if meta is None else meta))
        return out

    def counts(self) -> dict[str, int]:
        """The counts published with the manifest (what the indexer's catalog held then)."""
        return dict(self.counts_published)

    def item(self, item_id: int) -> dict[str, Any] | None:
        """An item as `Catalog.item` shows it, from its entities: modality, uris, metadata, segments."""
        if not 0 < int(item_id) < 2**63:
            return None
        with self._errors(f"reading {self.collection}"):
            rows = self._client().query(self.collection, filter=f"item_id == {int(item_id)}",
                                        output_fields=["id", *_SHOWN], limit=16_384, consistency_level=READ)
        if not rows:
            return None
        rows.sort(key=lambda r: int(r["id"]))
        first = rows[0]
        details = [r.get("details") or {} for r in rows]
        kinds = sorted({str(d.get("kind")) for d in details if d.get("kind") in ("image", "audio", "text")})
        meta = details[0].get("item_meta")
        segments = [{"modality": d.get("kind"), "start": d.get("start"), "end": d.get("end"), "text": d.get("text")}
                    for d in details if d.get("kind") in ("audio", "text") and
                    (d.get("text") is not None or d.get("start") is not None)]
        segments.sort(key=lambda s: str(s["modality"]))
        return {"id": int(item_id), "modality": first["modality"], "modalities": kinds or [first["modality"]],
                "meta": dict(first["meta"] if meta is None else meta),
                "uris": list(details[0].get("uris") or ([first["uri"]] if first["uri"] else [])),
                "segments": segments, "content_hash": None, "added_at": None}
