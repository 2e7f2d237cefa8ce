"""Users and their feedback events (like, dislike, click) on a collection's items.

Kept apart from the content catalog: content is what the indexer writes, feedback is what
people do. Both live in the collection's one database file, so an item's removal takes the
feedback on it along (a foreign key with ON DELETE CASCADE) in the same transaction.
"""

from __future__ import annotations

import time

from crossmodal.errors import NotFoundError
from crossmodal.storage.database import Database

FEEDBACK_EVENTS = ("like", "dislike", "click")


class FeedbackStore:
    """Users, created on their first event, and their events in time order."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, user: str, item_id: int, event: str, ts: float | None = None) -> int:
        """Record one event; returns its id. The item must exist."""
        if event not in FEEDBACK_EVENTS:
            raise ValueError(f"unknown feedback event {event!r}; use one of {list(FEEDBACK_EVENTS)}")
        with self.db.transaction() as conn:
            if not 0 < int(item_id) < 2**63 or conn.execute(
                    "SELECT 1 FROM items WHERE id=?", (int(item_id),)).fetchone() is None:
                raise NotFoundError(f"item: no item {item_id} in the collection")
            conn.execute("INSERT OR IGNORE INTO users (name, created_at) VALUES (?, ?)", (user, time.time()))
            user_id = conn.execute("SELECT id FROM users WHERE name=?", (user,)).fetchone()[0]
            cur = conn.execute("INSERT INTO feedback (user_id, item_id, event, ts) VALUES (?,?,?,?)",
                               (user_id, int(item_id), event, time.time() if ts is None else float(ts)))
            return int(cur.lastrowid)

    def events(self, user: str) -> list[tuple[int, str, float]]:
        """A user's events, oldest first: (item id, event, timestamp)."""
        return [(int(i), e, float(t)) for i, e, t in self.db.execute(
            "SELECT f.item_id, f.event, f.ts FROM feedback f JOIN users u ON u.id = f.user_id "
            "WHERE u.name=? ORDER BY f.ts, f.id", (user,))]

    def all_events(self) -> list[tuple[str, int, str, float]]:
        """Every user's events, in time order: (user, item id, event, timestamp). What a
        collaborative model is fitted on; a deleted user's rows are gone from it at once."""
        return [(str(u), int(i), e, float(t)) for u, i, e, t in self.db.execute(
            "SELECT u.name, f.item_id, f.event, f.ts FROM feedback f JOIN users u ON u.id = f.user_id "
            "ORDER BY f.ts, f.id")]

    def export(self, user: str) -> dict:
        """Everything stored about a user, as JSON-ready data."""
        return {"user": user, "events": [{"item": item, "event": event, "ts": ts}
                                         for item, event, ts in self.events(user)]}

    def delete_user(self, user: str) -> int:
        """Forget a user and every event of theirs; returns the number of events deleted."""
        with self.db.transaction() as conn:
            count = len(self.events(user))
            conn.execute("DELETE FROM users WHERE name=?", (user,))
            return count
