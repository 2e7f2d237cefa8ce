"""Which contents a catalog already holds, asked from any process.

Ingest asks before embedding a batch (`ContentLookup`, handed over by the core), so content
stored once is linked, not embedded again. An item awaiting a new embedding of damaged vectors
does not count as stored (see `damage.py`), so its file is embedded again.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from crossmodal.storage import damage
from crossmodal.storage.database import catalog_error, connect


def stored_hashes(db: sqlite3.Connection, hashes: Sequence[str], chunk: int = 500) -> set[str]:
    """Which of ``hashes`` the catalog holds items for, in a few queries rather than one each
    (an item awaiting a new embedding of damaged vectors does not count: see `damage.py`)."""
    unique = list(dict.fromkeys(hashes))
    found: set[str] = set()
    for start in range(0, len(unique), chunk):
        part = unique[start:start + chunk]
        marks = ",".join("?" * len(part))
        found.update(r[0] for r in db.execute(
            f"SELECT content_hash FROM items WHERE content_hash IN ({marks}) AND {damage.UNDAMAGED}", part))
    return found


class ContentLookup:
    """``lookup(hashes)``: the subset of content hashes the catalog holds items for.

    Handed to ingest, which asks it before embedding a batch; it opens its own read-only
    connection in whatever process calls it (a connection must not cross a fork)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._pid = -1

    def __call__(self, hashes: Sequence[str]) -> set[str]:
        if self._conn is None or self._pid != os.getpid():
            self._conn = connect(self.path, lambda exc: catalog_error(self.path, exc), read_only=True)
            self._pid = os.getpid()
        return stored_hashes(self._conn, hashes)
