"""Random secrets a collection keeps for its server (the key that signs browsers' user ids),
so that a restart does not turn everyone into a stranger. They never leave the database."""

from __future__ import annotations

import secrets

from crossmodal.storage.database import Database

_TABLE = "CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL)"


def collection_secret(db: Database, name: str) -> bytes:
    """The secret called ``name``, made (32 random bytes) the first time it is asked for."""
    exists = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='secrets'").fetchone()
    row = db.execute("SELECT value FROM secrets WHERE name=?", (name,)).fetchone() if exists else None
    if row is not None:
        return bytes(row[0])
    with db.transaction() as conn:
        conn.execute(_TABLE)
        conn.execute("INSERT OR IGNORE INTO secrets (name, value) VALUES (?, ?)", (name, secrets.token_bytes(32)))
        return bytes(conn.execute("SELECT value FROM secrets WHERE name=?", (name,)).fetchone()[0])
