"""One SQLite database file shared by a collection's stores (catalog, feedback).

SQLite connections must not be shared between threads, so each thread gets its own; WAL lets
readers in several threads run alongside one writer. A transaction is one ``BEGIN IMMEDIATE``
... ``COMMIT``: everything inside commits together or not at all.

Every SQLite failure leaves this module as a `CatalogError` naming the file and what to do (the
connections and cursors here convert them), so a damaged page reaches the user as one line, not
a traceback, whichever store or query ran into it. A failure that means damage is remembered
(`Database.damage`) for the health check.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crossmodal.errors import CatalogError

_NOT_DAMAGE = ("locked", "busy", "interrupt", "readonly", "read-only", "no transaction is active")


def collection_option(folder: Path) -> str:
    """``--collection X`` naming ``folder`` so that a command given back to the user finds it again
    (a bare name would be looked up under the collections root)."""
    text = str(folder)
    if os.sep not in text and not text.startswith("."):
        text = f".{os.sep}{text}"
    return f"--collection {shlex.quote(text)}"


def is_damage(exc: sqlite3.Error) -> bool:
    """Whether an SQLite error says the file is damaged or unreadable (not merely busy or read-only)."""
    return not any(word in str(exc).lower() for word in _NOT_DAMAGE)


def catalog_error(path: Path, exc: sqlite3.Error) -> CatalogError:
    """The one-line error for an SQLite failure on the catalog at ``path``, with what to do."""
    detail = " ".join(str(exc).split()) or type(exc).__name__
    check = f"`crossmodal check {collection_option(path.parent)}`"
    if not is_damage(exc):
        return CatalogError(f"{path}: the catalog is not available right now ({detail}); try again, or make sure "
                            f"no other process holds it and that it is writable")
    return CatalogError(f"{path}: the catalog is damaged or unreadable ({detail}); run {check} to see what is "
                        f"wrong and what can be repaired")


class _Cursor(sqlite3.Cursor):
    """A cursor whose SQLite errors (also those met while stepping through rows) become CatalogError."""

    def _fail(self, exc: sqlite3.DatabaseError) -> CatalogError:
        return self.connection.on_error(exc)  # type: ignore[attr-defined]

    def execute(self, sql: str, parameters: Any = ()) -> _Cursor:
        try:
            return super().execute(sql, parameters)
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError):
            raise
        except sqlite3.DatabaseError as exc:
            raise self._fail(exc) from exc

    def executemany(self, sql: str, seq: Any) -> _Cursor:
        try:
            return super().executemany(sql, seq)
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError):
            raise
        except sqlite3.DatabaseError as exc:
            raise self._fail(exc) from exc

    def executescript(self, script: str) -> _Cursor:
        try:
            return super().executescript(script)
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError):
            raise
        except sqlite3.DatabaseError as exc:
            raise self._fail(exc) from exc

    def fetchone(self) -> Any:
        try:
            return super().fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._fail(exc) from exc

    def fetchmany(self, size: int | None = None) -> list[Any]:
        try:
            return super().fetchmany(self.arraysize if size is None else size)
        except sqlite3.DatabaseError as exc:
            raise self._fail(exc) from exc

    def fetchall(self) -> list[Any]:
        try:
            return super().fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._fail(exc) from exc

    def __next__(self) -> Any:
        try:
            return super().__next__()
        except sqlite3.DatabaseError as exc:
            raise self._fail(exc) from exc


class _Connection(sqlite3.Connection):
    """A connection whose statements run through `_Cursor`; ``on_error`` turns an SQLite error into
    the CatalogError to raise."""

    on_error: Callable[[sqlite3.DatabaseError], CatalogError]

    def cursor(self, factory: Any = None) -> Any:  # type: ignore[override]
        return super().cursor(factory or _Cursor)

    def execute(self, sql: str, parameters: Any = ()) -> Any:  # type: ignore[override]
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, seq: Any) -> Any:  # type: ignore[override]
        return self.cursor().executemany(sql, seq)

    def executescript(self, script: str) -> Any:  # type: ignore[override]
        return self.cursor().executescript(script)


def connect(path: Path, on_error: Callable[[sqlite3.DatabaseError], CatalogError], *, read_only: bool = False,
            isolation_level: str | None = None) -> sqlite3.Connection:
    """A connection to ``path`` whose SQLite errors become ``on_error(exc)``; ``read_only`` opens
    it read-only (and never creates the file)."""
    target = path.resolve().as_uri() + "?mode=ro" if read_only else str(path)  # as_uri percent-encodes '#', '?'
    try:
        conn = sqlite3.connect(target, uri=read_only, timeout=30.0, isolation_level=isolation_level,
                               check_same_thread=False, factory=_Connection)
    except sqlite3.DatabaseError as exc:
        raise on_error(exc) from exc
    conn.on_error = on_error  # type: ignore[attr-defined]
    return conn


class Database:
    """Thread-local connections to one SQLite file, and transactions over them."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.damage: str | None = None
        """The first error this process met that says the file is damaged (for the health check)."""

    def error(self, exc: sqlite3.Error) -> CatalogError:
        """The CatalogError an SQLite error on this file becomes; damage is remembered."""
        error = catalog_error(self.path, exc)
        if is_damage(exc) and self.damage is None:
            self.damage = str(error)
        return error

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = connect(self.path, self.error)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
            except CatalogError:
                conn.close()
                raise
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
            self._rollback()
            raise
        self.local.depth = 0
        try:
            self.conn.execute("COMMIT")
        except (sqlite3.Error, CatalogError):
            self._rollback()
            raise

    def _rollback(self) -> None:
        """Roll back what is left: SQLite may already have rolled back after an I/O or corruption
        error, and the original error is the one to report."""
        try:
            self.conn.execute("ROLLBACK")
        except (sqlite3.Error, CatalogError):
            pass

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
