"""Every user's feedback as one sparse user x item matrix of net weights: what popularity and
the collaborative model are fitted on.

A user's events on one item add up (a like and a click: 1.25; a like then a dislike: 0), so
the matrix holds one signed number per pair. It is built from a plain list of events, so an
evaluation can build one from any fold of them, not only from the feedback store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interactions:
    """Net feedback weight per (user, item) pair, pairs with a net weight of 0 left out.
    ``rows`` index ``users``, ``cols`` index ``items`` (sorted item ids)."""

    users: tuple[str, ...]
    items: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray

    @classmethod
    def from_events(cls, events: Iterable[tuple[str, int, str]], weights: Mapping[str, float]) -> Interactions:
        """From (user, item id, event) triples (extra tuple fields, such as a timestamp, are
        ignored); ``weights`` gives each event's weight (like 1, dislike -1, click 0.25)."""
        net: dict[tuple[str, int], float] = {}
        for event in events:
            user, item, kind = event[0], int(event[1]), event[2]
            net[(user, item)] = net.get((user, item), 0.0) + float(weights[kind])
        pairs = sorted((k, v) for k, v in net.items() if abs(v) > 1e-9)
        users = tuple(sorted({u for (u, _), _ in pairs}))
        items = np.array(sorted({i for (_, i), _ in pairs}), dtype=np.int64)
        user_index = {u: n for n, u in enumerate(users)}
        rows = np.array([user_index[u] for (u, _), _ in pairs], dtype=np.int64)
        cols = np.searchsorted(items, np.array([i for (_, i), _ in pairs], dtype=np.int64)).astype(np.int64)
        values = np.array([v for _, v in pairs], dtype=np.float64)
        return cls(users, items, rows, cols, values)

    def __len__(self) -> int:
        return int(len(self.values))

    def fingerprint(self) -> str:
        """A digest of exactly what a model fitted on this would learn from: a stored model whose
        fingerprint differs is out of date (new feedback, a deleted user, a removed item)."""
        h = hashlib.sha256()
        h.update("\n".join(self.users).encode())
        for array in (self.items, self.rows, self.cols, np.round(self.values, 6)):
            h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()

    def user_counts(self) -> dict[str, int]:
        """Items each user reacted to positively (the user's history, for the hybrid blend)."""
        counts = np.bincount(self.rows[self.values > 0], minlength=len(self.users))
        return {u: int(c) for u, c in zip(self.users, counts)}

    def item_counts(self) -> dict[int, int]:
        """Users who reacted positively to each item (its popularity and its history)."""
        counts = np.bincount(self.cols[self.values > 0], minlength=len(self.items))
        return {int(i): int(c) for i, c in zip(self.items, counts)}
