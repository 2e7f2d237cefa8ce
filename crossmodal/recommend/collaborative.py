"""Collaborative filtering: implicit-feedback ALS (Hu, Koren and Volinsky, "Collaborative
Filtering for Implicit Feedback Datasets", 2008), written here in numpy.

Each (user, item) pair with feedback has a preference p (1 for a net positive weight r, 0 for a
net negative one: a dislike says "not this" as loudly as a like says "this") and a confidence
c = 1 + alpha |r|; every other pair has p = 0 with confidence 1. User factors X and item
factors Y minimise sum c (p - x_u . y_i)^2 + lambda (|X|^2 + |Y|^2), alternating exact
regularised least-squares solves: x_u = (Y'Y + Y'(C_u - I)Y + lambda I)^-1 Y' C_u p_u, which
needs only the user's own items beside the shared Y'Y (and the same for items).

Why our own and not the `implicit` library: a collection's feedback is thousands of users and
items, where one exact solve per user and item in numpy takes milliseconds; `implicit` would
add a compiled dependency (and its OpenMP threads) for no gain at this size, and an own fit
takes any interaction list, so an evaluation fits it on folds the same way. Should collections
grow to millions of events, the conjugate-gradient variant (or `implicit`) is the next step.

The fitted model is stored in the collection folder as npz (no pickle), with the fingerprint of
the interactions it was fitted on: a model whose fingerprint no longer matches the feedback is
refitted, so a deleted user's rows are gone from it at the next fit.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from crossmodal.errors import StorageError
from crossmodal.recommend.interactions import Interactions

MODEL_FILE = "collaborative.npz"
FORMAT = 1


@dataclass(frozen=True)
class ALSParams:
    """The fit's hyperparameters (from `[recommend]`)."""

    factors: int = 16
    regularization: float = 0.1
    iterations: int = 15
    alpha: float = 20.0
    seed: int = 0


@dataclass(frozen=True)
class CollaborativeModel:
    """User and item factors; ``fingerprint`` names the interactions they were fitted on."""

    users: tuple[str, ...]
    items: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    fingerprint: str
    params: ALSParams

    def knows(self, user: str) -> bool:
        return user in self.users

    def scores(self, user: str, item_ids: np.ndarray) -> np.ndarray | None:
        """x_u . y_i for each of ``item_ids`` (NaN for items the model has no factors for: no one
        reacted to them when it was fitted); None for a user it does not know."""
        if user not in self.users:
            return None
        x = self.user_factors[self.users.index(user)]
        out = np.full(len(item_ids), np.nan, dtype=np.float64)
        pos = np.searchsorted(self.items, item_ids)
        pos = np.minimum(pos, max(len(self.items) - 1, 0))
        known = (self.items[pos] == item_ids) if len(self.items) else np.zeros(len(item_ids), dtype=bool)
        out[known] = self.item_factors[pos[known]] @ x
        return out

    def user_vector(self, user: str) -> list[float] | None:
        """The user's factor row, as stored (part of what an export of the user shows)."""
        if user not in self.users:
            return None
        return [float(v) for v in self.user_factors[self.users.index(user)]]

    def save(self, folder: Path) -> Path:
        """Write the model into ``folder`` atomically (a reader sees the old file or the new one)."""
        path = folder / MODEL_FILE
        meta = json.dumps({"format": FORMAT, "fingerprint": self.fingerprint, "params": asdict(self.params),
                           "users": list(self.users)})
        fd, tmp = tempfile.mkstemp(prefix=f".{MODEL_FILE}.", suffix=".tmp.npz", dir=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, meta=np.array(meta), items=self.items, user_factors=self.user_factors,
                         item_factors=self.item_factors)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, folder: Path) -> CollaborativeModel | None:
        """The stored model, or None when there is none; a damaged file is refused by name."""
        path = folder / MODEL_FILE
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("format") != FORMAT:
                    return None  # an older format: refitted
                model = cls(tuple(meta["users"]), data["items"].astype(np.int64), data["user_factors"],
                            data["item_factors"], str(meta["fingerprint"]), ALSParams(**meta["params"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"{path}: unreadable collaborative model ({exc}); delete it to refit") from None
        if model.user_factors.shape != (len(model.users), model.params.factors) or \
                model.item_factors.shape != (len(model.items), model.params.factors):
            raise StorageError(f"{path}: the factor shapes do not match its users and items; delete it to refit")
        return model


def _solve_side(fixed: np.ndarray, own: list[np.ndarray], conf: list[np.ndarray], pref: list[np.ndarray],
                reg: float) -> np.ndarray:
    """One half-step: each row's factors given the other side's ``fixed`` factors, from the
    indices of its own observed pairs (``own``), their confidences and preferences."""
    f = fixed.shape[1]
    gram = fixed.T @ fixed + reg * np.eye(f)
    out = np.zeros((len(own), f), dtype=np.float64)
    for r, (idx, c, p) in enumerate(zip(own, conf, pref)):
        if not len(idx):
            continue
        y = fixed[idx]
        a = gram + (y.T * (c - 1.0)) @ y
        b = y.T @ (c * p)
        out[r] = np.linalg.solve(a, b)
    return out


def fit_als(interactions: Interactions, params: ALSParams = ALSParams()) -> CollaborativeModel:
    """Fit user and item factors on ``interactions`` (any list of them: the collection's feedback,
    or one fold of it)."""
    rng = np.random.default_rng(params.seed)
    n_users, n_items, f = len(interactions.users), len(interactions.items), params.factors
    conf = 1.0 + params.alpha * np.abs(interactions.values)
    pref = (interactions.values > 0).astype(np.float64)
    by_user = np.argsort(interactions.rows, kind="stable")
    by_item = np.argsort(interactions.cols, kind="stable")
    user_splits = np.searchsorted(interactions.rows[by_user], np.arange(n_users + 1))
    item_splits = np.searchsorted(interactions.cols[by_item], np.arange(n_items + 1))
    user_pairs = [by_user[user_splits[u]:user_splits[u + 1]] for u in range(n_users)]
    item_pairs = [by_item[item_splits[i]:item_splits[i + 1]] for i in range(n_items)]
    x = rng.normal(0.0, 0.01, (n_users, f))
    y = rng.normal(0.0, 0.01, (n_items, f))
    for _ in range(params.iterations):
        x = _solve_side(y, [interactions.cols[p] for p in user_pairs], [conf[p] for p in user_pairs],
                        [pref[p] for p in user_pairs], params.regularization)
        y = _solve_side(x, [interactions.rows[p] for p in item_pairs], [conf[p] for p in item_pairs],
                        [pref[p] for p in item_pairs], params.regularization)
    return CollaborativeModel(interactions.users, interactions.items.copy(), x.astype(np.float32),
                              y.astype(np.float32), interactions.fingerprint(), params)
