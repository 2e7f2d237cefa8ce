"""A collection's roots: the folders and files it was asked to index, as real paths.

The indexer records them; the server reads them to decide, at each request, whether a
catalogued file may be sent (see `crossmodal.ingest.confine`). Collections from before roots
were recorded get them from their catalogued files once: the folder each file was found in,
or the file itself.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from crossmodal.items import Root
from crossmodal.storage.database import Database

_TABLE = """
CREATE TABLE IF NOT EXISTS roots (
    path TEXT PRIMARY KEY,
    is_folder INTEGER NOT NULL,
    added_at REAL NOT NULL
)
"""


class RootStore:
    """The roots table of a collection's database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='roots'").fetchone() is None:
            with db.transaction() as conn:  # only once per catalog, so opening stays a read
                conn.execute(_TABLE)
                if conn.execute("SELECT 1 FROM roots LIMIT 1").fetchone() is None:
                    self._derive(conn)

    def _derive(self, conn) -> None:
        """Roots for a catalog written before they were recorded: each file's source folder
        when the file lies inside it, else the file itself."""
        rows = conn.execute("SELECT uri, source FROM files WHERE uri NOT LIKE '%#L%'").fetchall()
        roots = set()
        for uri, source in rows:
            real = os.path.realpath(uri)
            folder = Root(os.path.realpath(source), True) if source and os.path.isdir(source) else None
            roots.add(folder if folder is not None and folder.contains(real) else Root(real, False))
        self.add(roots)

    def all(self) -> list[Root]:
        return [Root(path, bool(is_folder)) for path, is_folder in
                self.db.execute("SELECT path, is_folder FROM roots ORDER BY path")]

    def add(self, roots: Iterable[Root]) -> None:
        now = time.time()
        with self.db.transaction() as conn:
            conn.executemany("INSERT OR IGNORE INTO roots (path, is_folder, added_at) VALUES (?, ?, ?)",
                             [(r.path, int(r.is_folder), now) for r in roots])
