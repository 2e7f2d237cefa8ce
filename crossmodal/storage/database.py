"""One SQLite database file shared by a collection's stores (catalog, feedback).

SQLite connections must not be shared between threads, so each thread gets its own; WAL lets
readers in several threads run alongside one writer. A transaction is one ``BEGIN IMMEDIATE``
... ``COMMIT``: everything inside commits together or not at all.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from crossmodal.errors import CatalogError


class Database:
    """Thread-local connections to one SQLite file, and transactions over them."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        conn = getattr(self.local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
            except sqlite3.DatabaseError as exc:
                raise CatalogError(f"{self.path}: not a usable catalog database ({exc})") from None
            self.local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def execute(self, sql: str, args: tuple | list = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, args)

    @property
    def in_transaction(self) -> bool:
        return getattr(self.local, "depth", 0) > 0

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write. Nested calls join the outer transaction, so a store method that
        needs one works both on its own and inside a caller's larger write."""
        if self.in_transaction:
            self.local.depth += 1
            try:
                yield self.conn
            finally:
                self.local.depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self.local.depth = 1
        self.local.state = {}
        try:
            yield self.conn
        except BaseException:
            self.local.depth = 0
            self.conn.execute("ROLLBACK")
            raise
        self.local.depth = 0
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error:
            self.conn.execute("ROLLBACK")
            raise

    @property
    def transaction_state(self) -> dict:
        """A scratch dict that lives as long as this thread's current transaction."""
        if not self.in_transaction:
            raise RuntimeError("not inside a transaction")
        return self.local.state

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self.local = threading.local()
