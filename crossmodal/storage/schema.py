"""The tables of a collection's SQLite database, created or checked when it is opened.

Content (``items``, ``item_meta``, ``files``, ``segments``, ``vectors``) belongs to the catalog
(`catalog.py`); ``users`` and ``feedback`` to the feedback store (`feedback.py`). They share one
file so that removing an item removes the feedback on it in the same transaction.

Changes to the tables are additive and made in place when a catalog is opened (a column or a
table more; `_migrate`), so a catalog written by an older crossmodal keeps working and keeps
its schema version. Opening an existing collection never creates a catalog: a missing, empty
or foreign file is an error, so a damaged collection is never silently replaced by an empty one.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from crossmodal.errors import CatalogError
from crossmodal.storage.database import Database, collection_option, connect
from crossmodal.storage.vector_checks import checksum

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    content_hash TEXT NOT NULL UNIQUE,
    modality TEXT NOT NULL,
    modalities TEXT NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}',
    added_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS items_modality ON items(modality);
CREATE TABLE IF NOT EXISTS item_meta (
    item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS item_meta_key ON item_meta(key, value);
CREATE INDEX IF NOT EXISTS item_meta_item ON item_meta(item_id);
CREATE TABLE IF NOT EXISTS files (
    uri TEXT PRIMARY KEY,
    item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    size INTEGER,
    mtime_ns INTEGER,
    signature TEXT,
    source TEXT,
    indexed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_item ON files(item_id);
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY,
    item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    modality TEXT NOT NULL,
    position INTEGER NOT NULL,
    start REAL NOT NULL,
    end REAL NOT NULL,
    text TEXT
);
CREATE INDEX IF NOT EXISTS segments_item ON segments(item_id);
CREATE TABLE IF NOT EXISTS vectors (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    segment_id INTEGER REFERENCES segments(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    vector BLOB NOT NULL,
    checksum INTEGER
);
CREATE INDEX IF NOT EXISTS vectors_item ON vectors(item_id);
CREATE INDEX IF NOT EXISTS vectors_kind ON vectors(kind);
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_user ON feedback(user_id, ts);
CREATE TABLE IF NOT EXISTS damaged_items (
    item_id INTEGER PRIMARY KEY REFERENCES items(id) ON DELETE CASCADE,
    reason TEXT NOT NULL,
    found_at REAL NOT NULL
);
"""


def open_database(path: str | Path, create: bool = True) -> Database:
    """The database at ``path`` with every table in place; a file from another schema version,
    or one that is not a SQLite database, is refused. With ``create`` false a missing file, or
    one holding no catalog (empty, or overwritten from its start), is an error rather than a
    new empty catalog."""
    path = Path(path)
    if not create and not path.is_file():
        raise CatalogError(f"{path}: the catalog is missing; the collection cannot be used without it (restore "
                           f"catalog.sqlite from a backup, or start over with `crossmodal index PATH... "
                           f"{collection_option(path.parent)} --rebuild`, which also forgets the users' feedback)")
    if not create:
        _refuse_non_catalog(path)
    db = Database(path)
    try:
        db.conn.executescript(SCHEMA)
        row = db.execute("SELECT value FROM info WHERE key='schema_version'").fetchone()
        if row is None:
            db.execute("INSERT INTO info VALUES ('schema_version', ?), ('generation', '0'), ('vector_checksums', '1')",
                       (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise CatalogError(f"{path}: catalog schema {row[0]}, this crossmodal reads {SCHEMA_VERSION}")
        _backfill_item_meta(db)
        _add_vector_checksums(db)
    except (sqlite3.DatabaseError, CatalogError) as exc:
        db.close()
        cause = exc if isinstance(exc, sqlite3.DatabaseError) else exc.__cause__
        if not isinstance(cause, sqlite3.DatabaseError):
            raise  # a refusal worded above
        raise CatalogError(f"{path}: not a usable catalog database ({cause}); run `crossmodal check "
                           f"{collection_option(path.parent)}`") from None
    except BaseException:
        db.close()
        raise
    return db


def _refuse_non_catalog(path: Path) -> None:
    """Refuse a file that holds no catalog (empty, overwritten from its start, or another program's
    database), looking through a read-only connection so the file stays exactly as it is."""
    def error(exc: sqlite3.Error) -> CatalogError:
        return CatalogError(f"{path}: not a usable catalog database ({exc}); run `crossmodal check "
                            f"{collection_option(path.parent)}`")

    conn = None
    try:
        conn = connect(path, error, read_only=True)
        found = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='info'").fetchone()
    finally:
        if conn is not None:
            conn.close()
    if found is None:
        raise CatalogError(f"{path}: holds no catalog (empty or overwritten); the collection cannot be used "
                           f"without it: restore catalog.sqlite from a backup, or start over with `crossmodal "
                           f"index PATH... {collection_option(path.parent)} --rebuild`")


def _add_vector_checksums(db: Database) -> None:
    """Catalogs written before vectors carried checksums get the column, and a checksum of what
    each vector holds now (once: the ``info`` table records that it was done)."""
    if db.execute("SELECT 1 FROM info WHERE key='vector_checksums'").fetchone() is not None:
        return
    with db.transaction() as conn:
        if "checksum" not in {r[1] for r in conn.execute("PRAGMA table_info(vectors)")}:
            conn.execute("ALTER TABLE vectors ADD COLUMN checksum INTEGER")
        last = 0
        while rows := conn.execute("SELECT id, vector FROM vectors WHERE id > ? ORDER BY id LIMIT 10000",
                                   (last,)).fetchall():
            conn.executemany("UPDATE vectors SET checksum=? WHERE id=?", [(checksum(b), i) for i, b in rows])
            last = rows[-1][0]
        conn.execute("INSERT INTO info VALUES ('vector_checksums', '1')")


def _backfill_item_meta(db: Database) -> None:
    """Catalogs written before the item_meta table existed get it filled from items.meta."""
    if db.execute("SELECT 1 FROM item_meta LIMIT 1").fetchone() is not None:
        return
    rows = db.execute("SELECT id, meta FROM items WHERE meta != '{}'").fetchall()
    pairs = [(item_id, str(k), str(v)) for item_id, meta in rows for k, v in json.loads(meta).items()
             if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
    if pairs:
        with db.transaction() as conn:
            conn.executemany("INSERT INTO item_meta (item_id, key, value) VALUES (?,?,?)", pairs)
