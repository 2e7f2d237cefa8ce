"""Items whose stored vectors are damaged, and how the next indexing run replaces them.

The catalog is the only copy of a vector, so a damaged one cannot be rebuilt from anything in
the collection: the item's file has to be embedded again. `crossmodal check --repair` records
such items in ``damaged_items`` and clears their files' signatures, so the next `crossmodal
index` reads those files again. While an item is recorded there, its content counts as not
stored (`UNDAMAGED`), so the run embeds it instead of linking the file to the damaged copy,
and the catalog then refills the same item (`reclaim`): its id, files and feedback stay.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from crossmodal.storage.vector_checks import faults

UNDAMAGED = "id NOT IN (SELECT item_id FROM damaged_items)"
"""SQL condition on ``items`` keeping the items whose content may be linked to rather than re-embedded."""


@dataclass(frozen=True)
class DamagedVector:
    """One stored vector that fails its check, with what it belongs to."""

    vector_id: int
    item_id: int
    kind: str
    reason: str


def _marks(values: Sequence) -> str:
    return ",".join("?" * len(values))


def scan(db: sqlite3.Connection, dim: int | None, chunk: int = 20_000) -> Iterator[DamagedVector]:
    """Every damaged vector in the catalog, read in id order a chunk at a time (memory stays flat)."""
    last = 0
    while True:
        rows = db.execute("SELECT id, item_id, kind, vector, checksum FROM vectors WHERE id > ? ORDER BY id LIMIT ?",
                          (last, chunk)).fetchall()
        if not rows:
            return
        for row, reason in sorted(faults([r[3] for r in rows], [r[4] for r in rows], dim).items()):
            vid, item_id, kind = rows[row][:3]
            yield DamagedVector(int(vid), int(item_id), kind, reason)
        last = int(rows[-1][0])


def recorded(db: sqlite3.Connection) -> dict[int, str]:
    """The items recorded as damaged (awaiting a new embedding), with the reason recorded."""
    return {int(i): r for i, r in db.execute("SELECT item_id, reason FROM damaged_items ORDER BY item_id")}


def record(db: sqlite3.Connection, reasons: dict[int, str]) -> None:
    """Record items as damaged and clear their files' signatures, so the next indexing run reads
    and embeds their files again (call inside a transaction)."""
    rows = [(int(i), r, time.time()) for i, r in reasons.items()]
    db.executemany("INSERT INTO damaged_items (item_id, reason, found_at) VALUES (?,?,?) "
                   "ON CONFLICT(item_id) DO UPDATE SET reason=excluded.reason", rows)
    ids = [int(i) for i in reasons]
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        db.execute(f"UPDATE files SET signature = NULL WHERE item_id IN ({_marks(part)})", part)


def reclaim(db: sqlite3.Connection, hashes: Sequence[str]) -> dict[str, int]:
    """The damaged items among ``hashes``, emptied of their segments, vectors and metadata so that a
    new embedding of the same content can be stored under the same id (call inside a transaction)."""
    unique = list(dict.fromkeys(hashes))
    found: dict[str, int] = {}
    for start in range(0, len(unique), 500):
        part = unique[start:start + 500]
        found.update((h, int(i)) for h, i in db.execute(
            f"SELECT content_hash, id FROM items WHERE content_hash IN ({_marks(part)}) AND NOT ({UNDAMAGED})", part))
    ids = list(found.values())
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        for table in ("vectors", "segments", "item_meta", "damaged_items"):
            db.execute(f"DELETE FROM {table} WHERE item_id IN ({_marks(part)})", part)
    return found


def kinds_of(db: sqlite3.Connection, vector_ids: Sequence[int]) -> dict[int, str]:
    """The kind of each vector id the catalog holds (to check an index holds the kinds it should)."""
    ids = [int(v) for v in vector_ids]
    out: dict[int, str] = {}
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        out.update((int(v), k) for v, k in db.execute(f"SELECT id, kind FROM vectors WHERE id IN ({_marks(part)})",
                                                        part))
    return out
