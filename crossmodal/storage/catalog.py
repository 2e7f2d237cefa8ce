"""The content catalog: the single source of truth for a collection's items and ids.

Longer than 400 lines because it is the one class over the content tables: the queries that
read or write them live here, apart from two narrow helpers beside it (`content_lookup.py`:
which contents are stored, from any process; `damage.py`: finding, recording and replacing
damaged vectors).

Tables:
- ``items``: one row per distinct content (``content_hash`` is unique, so identical files are
  stored and embedded once), with its primary modality, all modalities and metadata;
- ``files``: every uri pointing at an item, with the size and mtime seen when it was indexed
  (and a signature of every input that made it, sidecar caption included), so re-indexing can skip unchanged files;
- ``segments``: audio windows (start/end seconds) and text chunks (character span and text);
- ``vectors``: every embedding, float32 bytes. Vector ids are the FAISS ids, so the indexes
  can always be rebuilt from here, and a crash between a catalog commit and an index write
  loses nothing.

Item and vector ids are never reused (AUTOINCREMENT), so feedback that names an old item
never lands on a new one, and an index can be brought up to date by adding the ids above
the largest it holds. ``generation`` increases with every change to the vectors; the collection's manifest records the
generation its files were built from. Users and their feedback live beside it in the same
database file, in `feedback.py`.

Every vector carries a checksum, and every read that returns vectors checks the rows it returns
(`vector_checks.py`): a damaged vector is left out, never ranked. Items awaiting a new embedding
of damaged vectors are in `damage.py`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossmodal.items import VECTOR_KINDS, NewItem
from crossmodal.storage import damage
from crossmodal.storage.content_lookup import ContentLookup, stored_hashes
from crossmodal.storage.database import Database
from crossmodal.storage.filters import Filters
from crossmodal.storage.schema import open_database
from crossmodal.storage.vector_checks import DamageLog, checksum, faults


@dataclass(frozen=True)
class FileState:
    """What the catalog knows of one uri: its item and the file state when it was indexed."""

    uri: str
    item_id: int
    size: int | None
    mtime_ns: int | None
    signature: str | None
    source: str | None


@dataclass(frozen=True)
class FileLink:
    """A uri's new state, and what the catalog held for it before (None: nothing), which the
    caller has just read."""

    state: FileState
    previous: FileState | None


@dataclass(frozen=True)
class VectorHit:
    """What a vector id stands for: its item, kind, and segment span if any."""

    vector_id: int
    item_id: int
    kind: str
    uri: str
    modality: str
    start: float | None
    end: float | None
    text: str | None
    meta: dict


def _blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


class Catalog:
    """Items, files, segments and vectors of one collection."""

    def __init__(self, db: Database | str | Path) -> None:
        """Over an open collection database, or (for a catalog on its own) a database file."""
        self.database = db if isinstance(db, Database) else open_database(db)
        self.path = self.database.path
        self.dim: int | None = None
        """The collection's vector dimension (its model's); stored vectors of another length are damaged."""
        self.damage_log = DamageLog(str(self.path))

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection."""
        return self.database.conn

    def close(self) -> None:
        self.database.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: everything inside commits together or not at all."""
        with self.database.transaction() as conn:
            yield conn

    # Generation: bumped inside every transaction that changes vectors.
    @property
    def generation(self) -> int:
        return int(self.db.execute("SELECT value FROM info WHERE key='generation'").fetchone()[0])

    def _bump(self) -> None:
        """Once per transaction is enough: readers only see the commit."""
        if self.database.in_transaction:
            state = self.database.transaction_state
            if state.get("bumped"):
                return
            state["bumped"] = True
        self.db.execute("UPDATE info SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")

    def content_lookup(self) -> ContentLookup:
        """Which content hashes are stored, asked from any process (a forked ingest worker
        opens its own read-only connection)."""
        return ContentLookup(self.path)

    # Files.
    def file_state(self, uri: str) -> FileState | None:
        row = self.db.execute("SELECT uri, item_id, size, mtime_ns, signature, source FROM files WHERE uri=?",
                              (uri,)).fetchone()
        return FileState(*row) if row else None

    def has_files(self) -> bool:
        return self.db.execute("SELECT 1 FROM files LIMIT 1").fetchone() is not None

    def file_states(self) -> dict[str, FileState]:
        rows = self.db.execute("SELECT uri, item_id, size, mtime_ns, signature, source FROM files")
        return {r[0]: FileState(*r) for r in rows}

    def stored_hashes(self, hashes: Sequence[str]) -> set[str]:
        return stored_hashes(self.db, hashes)

    def item_for_hash(self, content_hash: str) -> int | None:
        return self.items_for_hashes([content_hash]).get(content_hash)

    def items_for_hashes(self, hashes: Sequence[str], chunk: int = 500) -> dict[str, int]:
        """The item id of each of ``hashes`` the catalog holds, in a few queries."""
        unique = list(dict.fromkeys(hashes))
        found: dict[str, int] = {}
        for start in range(0, len(unique), chunk):
            part = unique[start:start + chunk]
            found.update((h, int(i)) for h, i in self.db.execute(
                f"SELECT content_hash, id FROM items WHERE content_hash IN ({','.join('?' * len(part))}) "
                f"AND {damage.UNDAMAGED}", part))
        return found

    def link_file(self, uri: str, item_id: int, size: int | None, mtime_ns: int | None,
                  signature: str | None = None, source: str | None = None) -> None:
        """Point ``uri`` at ``item_id`` (call inside a transaction); the item it pointed at before
        is dropped when nothing else points at it."""
        self.link_files([FileLink(FileState(uri, item_id, size, mtime_ns, signature, source), self.file_state(uri))])

    def link_files(self, links: Sequence[FileLink]) -> None:
        """Point each link's uri at its item (inside a transaction), then drop the items they
        pointed at before that nothing points at any more. Orphans are only looked for once
        every link is in, so a batch may move one file off an item and another onto it."""
        now = time.time()
        self.db.executemany(
            "INSERT INTO files (uri, item_id, size, mtime_ns, signature, source, indexed_at) VALUES (?,?,?,?,?,?,?) "
            "ON CONFLICT(uri) DO UPDATE SET item_id=excluded.item_id, size=excluded.size, "
            "mtime_ns=excluded.mtime_ns, signature=excluded.signature, source=excluded.source, "
            "indexed_at=excluded.indexed_at",
            [(x.state.uri, x.state.item_id, x.state.size, x.state.mtime_ns, x.state.signature, x.state.source, now)
             for x in links])
        left = {x.previous.item_id for x in links if x.previous is not None and x.previous.item_id != x.state.item_id}
        for item_id in sorted(left):
            self._drop_if_orphan(item_id)

    def unlink_file(self, uri: str) -> bool:
        """Forget ``uri`` (inside a transaction); its item goes when no other uri points at it."""
        state = self.file_state(uri)
        if state is None:
            return False
        self.db.execute("DELETE FROM files WHERE uri=?", (uri,))
        self._drop_if_orphan(state.item_id)
        return True

    def _drop_if_orphan(self, item_id: int) -> None:
        if self.db.execute("SELECT 1 FROM files WHERE item_id=? LIMIT 1", (item_id,)).fetchone() is None:
            self.db.execute("DELETE FROM items WHERE id=?", (item_id,))
            self._bump()

    # Items.
    def add_item(self, item: NewItem) -> int:
        """Store an item with its segments and vectors (inside a transaction); returns its id."""
        return self.add_items([item])[0]

    def add_items(self, items: Sequence[NewItem]) -> list[int]:
        """Store items with their segments and vectors (inside a transaction); returns their ids.

        Ids are assigned here, so a batch takes a few statements rather than several per item;
        nobody else can take them, since a transaction holds the database's write lock. They
        are what SQLite would have given one row at a time, and never reuse a deleted id. An
        item awaiting a new embedding of damaged vectors is refilled under its own id."""
        for item in items:
            for kind in item.vectors:
                if kind not in VECTOR_KINDS:
                    raise ValueError(f"unknown vector kind {kind!r}")
        if not items:
            return []
        reclaimed = damage.reclaim(self.db, [item.content_hash for item in items])
        next_item, seg_id, vec_id = self._next_id("items"), self._next_id("segments"), self._next_id("vectors")
        now = time.time()
        ids: list[int] = []
        item_rows, refilled, meta_rows, seg_rows, vec_rows = [], [], [], [], []
        for item in items:
            item_id = reclaimed.get(item.content_hash)
            if item_id is None:
                item_id, next_item = next_item, next_item + 1
                item_rows.append((item_id, item.content_hash, item.modality, ",".join(item.modalities),
                                  json.dumps(item.meta), now))
            else:
                refilled.append((item.modality, ",".join(item.modalities), json.dumps(item.meta), item_id))
            ids.append(item_id)
            meta_rows += [(item_id, str(k), str(v)) for k, v in item.meta.items()
                          if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
            for kind, vector in item.vectors.items():
                blob = _blob(vector)
                vec_rows.append((vec_id, item_id, None, kind, blob, checksum(blob)))
                vec_id += 1
            for position, seg in enumerate(item.segments):
                seg_rows.append((seg_id, item_id, seg.modality, position, float(seg.start), float(seg.end), seg.text))
                blob = _blob(seg.vector)
                vec_rows.append((vec_id, item_id, seg_id, seg.modality, blob, checksum(blob)))
                seg_id, vec_id = seg_id + 1, vec_id + 1
        db = self.db
        db.executemany("INSERT INTO items (id, content_hash, modality, modalities, meta, added_at) "
                       "VALUES (?,?,?,?,?,?)", item_rows)
        db.executemany("UPDATE items SET modality=?, modalities=?, meta=? WHERE id=?", refilled)
        db.executemany("INSERT INTO item_meta (item_id, key, value) VALUES (?,?,?)", meta_rows)
        db.executemany("INSERT INTO segments (id, item_id, modality, position, start, end, text) "
                       "VALUES (?,?,?,?,?,?,?)", seg_rows)
        db.executemany("INSERT INTO vectors (id, item_id, segment_id, kind, vector, checksum) VALUES (?,?,?,?,?,?)",
                       vec_rows)
        self._bump()
        return ids

    def _next_id(self, table: str) -> int:
        """The id SQLite would give the table's next row: past both the largest id in use and,
        for AUTOINCREMENT tables, the largest ever used."""
        row = self.db.execute(
            f"SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name=?), 0), "
            f"COALESCE((SELECT MAX(id) FROM {table}), 0))", (table,)).fetchone()
        return int(row[0]) + 1

    def remove_item(self, item_id: int) -> list[str]:
        """Remove an item and every uri pointing at it (inside a transaction); returns those uris."""
        uris = [r[0] for r in self.db.execute("SELECT uri FROM files WHERE item_id=?", (item_id,))]
        deleted = self.db.execute("DELETE FROM items WHERE id=?", (item_id,)).rowcount
        if deleted:
            self._bump()
        return uris

    def has_item(self, item_id: int) -> bool:
        if not 0 < int(item_id) < 2**63:
            return False
        return self.db.execute("SELECT 1 FROM items WHERE id=?", (item_id,)).fetchone() is not None

    def counts(self) -> dict[str, int]:
        """Items per primary modality, files, segments and vectors per kind."""
        out = {f"items_{m}": n for m, n in self.db.execute("SELECT modality, COUNT(*) FROM items GROUP BY modality")}
        out["items"] = int(self.db.execute("SELECT COUNT(*) FROM items").fetchone()[0])
        out["files"] = int(self.db.execute("SELECT COUNT(*) FROM files").fetchone()[0])
        out["segments"] = int(self.db.execute("SELECT COUNT(*) FROM segments").fetchone()[0])
        for kind, n in self.db.execute("SELECT kind, COUNT(*) FROM vectors GROUP BY kind"):
            out[f"vectors_{kind}"] = int(n)
        return out

    # Vectors.
    def _sound(self, rows: list[tuple]) -> list[tuple]:
        """``rows`` of (vector id, item id, ..., blob, checksum) without the damaged ones, which are logged."""
        bad = faults([r[-2] for r in rows], [r[-1] for r in rows], self.dim)
        for row, reason in bad.items():
            self.damage_log.report(int(rows[row][0]), int(rows[row][1]), reason)
        return [r for i, r in enumerate(rows) if i not in bad] if bad else rows

    def vectors(self, kinds: Sequence[str] | None = None, dim: int | None = None,
                where: tuple[str, tuple] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64, matrix float32) of every sound vector of the given kinds, in id order."""
        clauses, args = [], []
        if kinds is not None:
            clauses.append(f"kind IN ({','.join('?' * len(kinds))})")
            args += list(kinds)
        if where is not None:
            clauses.append(where[0])
            args += list(where[1])
        sql = "SELECT id, item_id, vector, checksum FROM vectors"
        sql += " WHERE " + " AND ".join(clauses) if clauses else ""
        rows = self._sound(self.db.execute(sql + " ORDER BY id", args).fetchall())
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        if not rows:
            return ids, np.zeros((0, dim or self.dim or 0), dtype=np.float32)
        matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        return ids, matrix.copy()

    def vectors_above(self, vector_id: int, kinds: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Vectors added after ``vector_id`` (ids only grow), for appending to an index."""
        return self.vectors(kinds, where=("id > ?", (int(vector_id),)))

    def vector_count(self, kinds: Sequence[str] | None = None) -> int:
        sql, args = "SELECT COUNT(*) FROM vectors", ()
        if kinds is not None:
            sql += f" WHERE kind IN ({','.join('?' * len(kinds))})"
            args = tuple(kinds)
        return int(self.db.execute(sql, args).fetchone()[0])

    def max_vector_id(self) -> int:
        return int(self.db.execute("SELECT COALESCE(MAX(id), 0) FROM vectors").fetchone()[0])

    def describe(self, vector_ids: Sequence[int]) -> dict[int, VectorHit]:
        """What each vector id stands for; ids no longer in the catalog are absent."""
        ids = [int(v) for v in vector_ids]
        if not ids:
            return {}
        out: dict[int, VectorHit] = {}
        for chunk in range(0, len(ids), 500):
            part = ids[chunk:chunk + 500]
            rows = self.db.execute(
                "SELECT v.id, v.item_id, v.kind, i.modality, i.meta, s.start, s.end, s.text, "
                "(SELECT MIN(uri) FROM files f WHERE f.item_id = v.item_id) "
                "FROM vectors v JOIN items i ON i.id = v.item_id LEFT JOIN segments s ON s.id = v.segment_id "
                f"WHERE v.id IN ({','.join('?' * len(part))})", part)
            for vid, item_id, kind, modality, meta, start, end, text, uri in rows:
                out[int(vid)] = VectorHit(int(vid), int(item_id), kind, uri or "", modality,
                                          start, end, text, json.loads(meta))
        return out

    def vector_owners(self, vector_ids: Sequence[int]) -> dict[int, tuple[int, np.ndarray]]:
        """Item id and stored vector of each vector id, in one light query (no metadata); damaged
        vectors are absent, so a search never ranks them."""
        out: dict[int, tuple[int, np.ndarray]] = {}
        ids = [int(v) for v in vector_ids]
        for chunk in range(0, len(ids), 500):
            part = ids[chunk:chunk + 500]
            for vid, item_id, blob, _ in self._sound(self.db.execute(
                    f"SELECT id, item_id, vector, checksum FROM vectors WHERE id IN ({','.join('?' * len(part))})",
                    part).fetchall()):
                out[int(vid)] = (int(item_id), np.frombuffer(blob, dtype=np.float32))
        return out

    def vectors_by_id(self, vector_ids: Sequence[int]) -> dict[int, np.ndarray]:
        """The stored vectors of the given ids (missing and damaged ids are absent)."""
        out: dict[int, np.ndarray] = {}
        ids = [int(v) for v in vector_ids]
        for chunk in range(0, len(ids), 500):
            part = ids[chunk:chunk + 500]
            for vid, _, blob, _ in self._sound(self.db.execute(
                    f"SELECT id, item_id, vector, checksum FROM vectors WHERE id IN ({','.join('?' * len(part))})",
                    part).fetchall()):
                out[int(vid)] = np.frombuffer(blob, dtype=np.float32)
        return out

    def item_vectors(self, item_ids: Sequence[int]) -> dict[int, np.ndarray]:
        """One vector standing for each item: its fused vector if it has one, else the mean of all
        its vectors (image, audio windows, text chunks), renormalised. Damaged vectors are left out."""
        out: dict[int, np.ndarray] = {}
        ids = sorted({int(i) for i in item_ids})
        for chunk in range(0, len(ids), 500):
            part = ids[chunk:chunk + 500]
            rows = self._sound(self.db.execute(
                "SELECT id, item_id, kind, vector, checksum FROM vectors "
                f"WHERE item_id IN ({','.join('?' * len(part))})", part).fetchall())
            grouped: dict[int, list[tuple[str, np.ndarray]]] = {}
            for _, item_id, kind, blob, _ in rows:
                grouped.setdefault(int(item_id), []).append((kind, np.frombuffer(blob, dtype=np.float32)))
            for item_id, vecs in grouped.items():
                fused = [v for k, v in vecs if k == "fused"]
                mean = fused[0] if fused else np.mean([v for _, v in vecs], axis=0)
                norm = float(np.linalg.norm(mean))
                out[item_id] = (mean / norm if norm > 0 else mean).astype(np.float32)
        return out

    def id_bound(self) -> int:
        """The largest vector id ever handed out (ids are never reused)."""
        row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'vectors'").fetchone()
        return int(row[0]) if row else 0

    def vector_items(self, vector_ids: Sequence[int]) -> dict[int, int]:
        """The item of each vector id still in the catalog."""
        out: dict[int, int] = {}
        ids = [int(v) for v in vector_ids]
        for chunk in range(0, len(ids), 500):
            part = ids[chunk:chunk + 500]
            out.update((int(v), int(i)) for v, i in self.db.execute(
                f"SELECT id, item_id FROM vectors WHERE id IN ({','.join('?' * len(part))})", part))
        return out

    def vectors_of_items(self, item_ids: Sequence[int]) -> list[int]:
        """Every vector id of the given items."""
        out: list[int] = []
        ids = [int(i) for i in item_ids]
        for chunk in range(0, len(ids), 500):
            part = ids[chunk:chunk + 500]
            out += [int(r[0]) for r in self.db.execute(
                f"SELECT id FROM vectors WHERE item_id IN ({','.join('?' * len(part))})", part)]
        return out

    def filter_fields(self, item_ids: Sequence[int] | None = None, with_uris: bool = False) -> dict[int, dict]:
        """What `filter_vector_ids` filters on, per item: modality, first uri and uri count, file
        time (newest file mtime in seconds, else when the item was added) and metadata as text;
        with ``with_uris``, every uri too (sorted). Every item when ``item_ids`` is None. A backend
        that filters beside its vectors stores these."""
        sql = ("SELECT i.id, i.modality, i.added_at, MIN(f.uri), COUNT(f.uri), MAX(f.mtime_ns) "
               "FROM items i LEFT JOIN files f ON f.item_id = i.id")
        uris: list[tuple[int, str]] = []
        if item_ids is None:
            rows = self.db.execute(sql + " GROUP BY i.id").fetchall()
            metas = self.db.execute("SELECT item_id, key, value FROM item_meta").fetchall()
            if with_uris:
                uris = self.db.execute("SELECT item_id, uri FROM files ORDER BY uri").fetchall()
        else:
            ids = [int(i) for i in item_ids]
            rows, metas = [], []
            for chunk in range(0, len(ids), 500):
                part = ids[chunk:chunk + 500]
                marks = ",".join("?" * len(part))
                rows += self.db.execute(sql + f" WHERE i.id IN ({marks}) GROUP BY i.id", part).fetchall()
                metas += self.db.execute(f"SELECT item_id, key, value FROM item_meta WHERE item_id IN ({marks})",
                                         part).fetchall()
                if with_uris:
                    uris += self.db.execute(f"SELECT item_id, uri FROM files WHERE item_id IN ({marks}) ORDER BY uri",
                                            part).fetchall()
        out: dict[int, dict] = {}
        for item_id, modality, added_at, uri, n_uris, mtime_ns in rows:
            mtime = float(added_at) if mtime_ns is None else mtime_ns / 1e9
            out[int(item_id)] = {"item_id": int(item_id), "modality": modality, "uri": uri or "",
                                 "n_uris": int(n_uris), "mtime": mtime, "meta": {}}
            if with_uris:
                out[int(item_id)]["uris"] = []
        for item_id, key, value in metas:
            if int(item_id) in out:
                out[int(item_id)]["meta"][key] = value
        for item_id, uri in uris:
            if int(item_id) in out:
                out[int(item_id)]["uris"].append(uri)
        return out

    def filter_vector_ids(self, *, modalities: Sequence[str] | None = None, uri_glob: str | None = None,
                          meta: dict[str, str] | None = None, time_range: tuple[float | None, float | None] | None
                          = None, among: Sequence[int] | None = None) -> np.ndarray:
        """Ids of the vectors whose item passes every given filter (sorted int64).

        ``modalities`` are item modalities, ``uri_glob`` is matched against every uri of the
        item (shell-style, case-sensitive), ``meta`` values are compared as text (numbers as Python prints them), and
        ``time_range`` bounds the file modification time (seconds since the epoch), falling back
        to the time the item was added for inline text. ``among`` limits the answer to those vector ids."""
        clauses, args = [], []
        if among is not None:
            clauses.append(f"v.id IN ({','.join('?' * len(among))})")
            args += [int(v) for v in among]
        if modalities:
            clauses.append(f"i.modality IN ({','.join('?' * len(modalities))})")
            args += list(modalities)
        if uri_glob:
            clauses.append("EXISTS (SELECT 1 FROM files f WHERE f.item_id = i.id AND f.uri GLOB ?)")
            args.append(uri_glob)
        for key, value in (meta or {}).items():
            clauses.append("i.id IN (SELECT item_id FROM item_meta WHERE key = ? AND value = ?)")
            args += [str(key), str(value)]
        if time_range is not None:
            when = ("COALESCE((SELECT MAX(f.mtime_ns) FROM files f WHERE f.item_id = i.id) / 1e9, i.added_at)")
            low, high = time_range
            if low is not None:
                clauses.append(f"{when} >= ?")
                args.append(float(low))
            if high is not None:
                clauses.append(f"{when} <= ?")
                args.append(float(high))
        sql = "SELECT v.id FROM vectors v JOIN items i ON i.id = v.item_id"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        rows = self.db.execute(sql + " ORDER BY v.id", args).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def passing_ids(self, vector_ids: Sequence[int], filters: Filters) -> np.ndarray:
        """The ids among ``vector_ids`` whose items pass ``filters`` (sorted int64): a search's
        candidates checked, where the index already applied the filters (maybe loosely)."""
        time_range = None if filters.after is None and filters.before is None else (filters.after, filters.before)
        ids = sorted({int(v) for v in vector_ids})
        parts = [self.filter_vector_ids(modalities=filters.modalities or None, uri_glob=filters.uri_glob,
                                        meta=filters.meta or None, time_range=time_range, among=ids[i:i + 500])
                 for i in range(0, len(ids), 500)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def item(self, item_id: int) -> dict | None:
        """An item as a plain dict: id, modality, modalities, uris, meta, segments."""
        if not 0 < int(item_id) < 2**63:
            return None
        row = self.db.execute("SELECT id, content_hash, modality, modalities, meta, added_at FROM items WHERE id=?",
                              (item_id,)).fetchone()
        if row is None:
            return None
        uris = [r[0] for r in self.db.execute("SELECT uri FROM files WHERE item_id=? ORDER BY uri", (item_id,))]
        segments = [{"modality": m, "start": s, "end": e, "text": t} for m, s, e, t in self.db.execute(
            "SELECT modality, start, end, text FROM segments WHERE item_id=? ORDER BY modality, position", (item_id,))]
        return {"id": row[0], "content_hash": row[1], "modality": row[2], "modalities": row[3].split(","),
                "meta": json.loads(row[4]), "added_at": row[5], "uris": uris, "segments": segments}
