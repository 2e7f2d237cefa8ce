"""Calibrated relevance: raw cosines made comparable across directions (query modality → index).

Why: every direction has its own cosine scale. With the starter model a query about "seven"
scores 1.000 against captions of seven, 0.93 against recordings of seven and 0.87 against
images of seven, so ranking all targets by raw cosine lists captions only, and no raw number
says whether a match is good or merely the least bad.

How, per direction d (text, image or audio query → the text, image, audio or joint index), from
the collection itself (`compute_calibration`):

- up to 256 stored vectors of the query modality, drawn with a fixed seed, serve as queries;
- each one's best match in the index (itself and other vectors of its own item left out where
  the index holds them) gives the direction's best-match distribution: ``best``, its median,
  and ``spread``, (median - 10th percentile) / 1.28, a robust standard deviation;
- its cosines against up to 1024 random vectors of the index give ``background`` (median); the
  spread is at least 1% of best - background, so a direction whose best matches are all equal
  (duplicates) still has a scale.

A cosine c in direction d lies z = (c - best_d) / spread_d best-match spreads from a typical
best match: 0 is as close as the collection's typical best match, -3 is weaker than nearly
every best match. z means the same in every direction, so it is what is mixed, weighted and
thresholded. Parts of a query combine by their weights (z = sum w_i z_i, each part in its own
direction). For display and thresholds z is squashed into [0, 1]: relevance = 1 / (1 + exp(-1.7
(z + 2))), about 0.97 for a typical best match, 0.5 two spreads below it, 0.03 four spreads
below. The personal score is a taste in [0, 1] (`mixed_taste`: the preference vector is a mix
of the modalities of the items the user reacted to, each share placed between its direction's
background and typical best match), blended with the relevance: (1 - beta) relevance + beta
taste.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from crossmodal.errors import CrossmodalError
from crossmodal.media import MODALITIES
from crossmodal.storage.backends.base import VectorIndex
from crossmodal.storage.catalog import Catalog

VERSION = 1
SAMPLE_QUERIES = 256
BACKGROUND = 1024
NEIGHBOURS = 32
"""Neighbours fetched per sampled query, so that its own item's other vectors can be skipped."""
MIN_QUERIES = 20
"""Sampled queries with a match a direction needs; fewer (a tiny collection) leave it uncalibrated."""
SPREAD_FLOOR = 0.01
REFRESH_CHANGE = 0.05
"""A stored calibration is recomputed once an index has grown or shrunk by more than this share."""
CENTRE, SLOPE = 2.0, 1.7
SEED = 19
NOTICE = "nothing close; this model may not know this kind of content"


def squash(z: np.ndarray | float) -> np.ndarray:
    """Calibrated relevance in [0, 1] from z (a logistic, written with tanh so it never overflows)."""
    return 0.5 * (1.0 + np.tanh(0.5 * SLOPE * (np.asarray(z, dtype=np.float64) + CENTRE)))


@dataclass(frozen=True)
class Anchor:
    """One direction's typical best match, its spread and its background level (all cosines)."""

    best: float
    spread: float
    background: float
    queries: int

    def z(self, cosines: np.ndarray) -> np.ndarray:
        return (np.asarray(cosines, dtype=np.float64) - self.best) / self.spread


class Calibration:
    """The anchors of every direction a collection can calibrate, read from their stored dict."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = dict(data)
        self.anchors = {tuple(key.split(">", 1)): Anchor(**value) for key, value in data.get("directions", {}).items()}

    def anchor(self, modality: str, index: str) -> Anchor | None:
        return self.anchors.get((modality, index))

    def describe(self, modalities: Sequence[str], indexes: Sequence[str]) -> dict[str, Any]:
        """The anchors of these directions, rounded, for a plan."""
        out: dict[str, Any] = {}
        for m in dict.fromkeys(modalities):
            for n in indexes:
                a = self.anchor(m, n)
                out[f"{m}>{n}"] = None if a is None else {"best": round(a.best, 4), "spread": round(a.spread, 4),
                                                           "background": round(a.background, 4)}
        return out


def _sample(ids: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    ids = np.sort(np.asarray(ids, dtype=np.int64))
    return ids if len(ids) <= n else np.sort(rng.choice(ids, size=n, replace=False))


def _stacked(found: Mapping[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter(found, dtype=np.int64, count=len(found))
    if not len(ids):
        return ids, np.zeros((0, 0), dtype=np.float32)
    return ids, np.stack([found[int(i)] for i in ids]).astype(np.float32)


def _anchor(catalog: Catalog, own: bool, index: VectorIndex, qids: np.ndarray, queries: np.ndarray,
            background: np.ndarray) -> Anchor | None:
    """The anchor of one direction from its sampled queries and a sample of the index's vectors
    (``background``); None when too few queries have a match."""
    k = min(NEIGHBOURS if own else 1, index.ntotal)
    scores, found = index.search(queries, k)
    usable = found >= 0
    if own:  # neither the query itself nor another vector of its item is its best match
        items = catalog.vector_items(np.concatenate([qids, np.unique(found[usable])]))
        keys = np.fromiter(items, dtype=np.int64, count=len(items))
        values = np.fromiter(items.values(), dtype=np.int64, count=len(items))
        order = np.argsort(keys)

        def item_of(vids: np.ndarray) -> np.ndarray:
            at = np.clip(np.searchsorted(keys[order], vids), 0, len(keys) - 1)
            return np.where(keys[order][at] == vids, values[order][at], -1)

        usable &= item_of(found) != item_of(qids)[:, None]
    has = usable.any(axis=1)
    best = scores[has, usable[has].argmax(axis=1)].astype(np.float64)
    if len(best) < MIN_QUERIES or not len(background):
        return None
    typical = float(np.median(best))
    background_level = float(np.median(queries @ background.T))
    spread = (typical - float(np.quantile(best, 0.1))) / 1.2816
    spread = max(spread, SPREAD_FLOOR * (typical - background_level), 1e-4)
    return Anchor(round(typical, 6), round(spread, 6), round(background_level, 6), len(best))


def is_fresh(stored: Mapping[str, Any] | None, counts: Mapping[str, int]) -> bool:
    """Whether a stored calibration still describes indexes of these sizes."""
    if not stored or stored.get("version") != VERSION:
        return False
    before = stored.get("counts", {})
    if set(before) != set(counts):
        return False
    return all(abs(counts[n] - int(before[n])) <= REFRESH_CHANGE * max(int(before[n]), 1) for n in counts)


def compute_calibration(catalog: Catalog, indexes: Mapping[str, VectorIndex],
                        previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The calibration of a collection's indexes (``previous`` when it is still fresh), as the
    plain dict the manifest stores. Deterministic: the same collection gives the same anchors."""
    counts = {name: int(index.ntotal) for name, index in indexes.items()}
    if previous is not None and is_fresh(previous, counts):
        return dict(previous)
    started = time.perf_counter()
    rng = np.random.default_rng(SEED)
    nonempty = {name: index for name, index in sorted(indexes.items()) if index.ntotal}
    stored = {name: index.stored_ids() for name, index in nonempty.items()}
    background = {name: _stacked(catalog.vectors_by_id(_sample(ids, BACKGROUND, rng)))[1]
                  for name, ids in stored.items()}
    directions: dict[str, Any] = {}
    for modality in MODALITIES:
        if modality not in nonempty:
            continue
        qids, queries = _stacked(catalog.vectors_by_id(_sample(stored[modality], SAMPLE_QUERIES, rng)))
        if not len(qids):
            continue
        for name, index in nonempty.items():
            anchor = _anchor(catalog, name in (modality, "joint"), index, qids, queries, background[name])
            if anchor is not None:
                directions[f"{modality}>{name}"] = asdict(anchor)
    return {"version": VERSION, "counts": counts, "directions": directions, "computed_at": time.time(),
            "seconds": round(time.perf_counter() - started, 3)}


class CalibrationCache:
    """The calibration a planner uses: the manifest's while fresh, else one computed from the open
    indexes (an older collection, or one grown since) and kept until the indexes change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._value: tuple[Calibration | None, str] = (None, "none")
        self._stored: tuple[Mapping[str, Any], Calibration] | None = None

    def get(self, collection: Any) -> tuple[Calibration | None, str]:
        """(calibration or None, where it came from) for ``collection`` (a storage Collection)."""
        manifest = collection.manifest
        counts = {name: int(entry.get("ntotal", 0)) for name, entry in manifest.get("indexes", {}).items()}
        stored = manifest.get("calibration")
        if is_fresh(stored, counts):
            known = self._stored
            if known is None or known[0] is not stored:  # the manifest's own dict, kept alive here
                known = self._stored = (stored, Calibration(stored))
            return known[1], "stored with the indexes"
        key = (manifest.get("catalog_generation"), tuple(sorted(counts.items())))
        with self._lock:
            if key != self._key:
                opened: dict[str, VectorIndex] = {}
                for name in counts:
                    try:
                        opened[name] = collection.index(name)
                    except CrossmodalError:
                        continue  # a damaged index is left out; its directions stay uncalibrated
                data = compute_calibration(collection.catalog, opened) if opened else None
                self._value = (Calibration(data), "computed when first searched") if data else (None, "none")
                self._key = key
            return self._value


def _anchor_rows(calibration: Calibration, modality: str, names: Sequence[str],
                 codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(best, spread, background) of each row's direction, ``modality`` → the index the row came
    from (``names[codes[i]]``); None when a direction in use has no anchor."""
    used = set(np.unique(codes).tolist())
    anchors = [calibration.anchor(modality, str(name)) if i in used else Anchor(1.0, 1.0, 0.0, 0)
               for i, name in enumerate(names)]
    if any(a is None for a in anchors):
        return None
    return tuple(np.array([getattr(a, f) for a in anchors])[codes] for f in ("best", "spread", "background"))


def mixed_z(calibration: Calibration, shares: Mapping[str, float], names: Sequence[str], codes: np.ndarray,
            cosines: np.ndarray) -> np.ndarray | None:
    """z of cosines against a vector that mixes modalities (shares summing to 1), each share in
    its own direction (row i came from the index ``names[codes[i]]``); None when a direction has
    no anchor."""
    if not shares:
        return None
    z = np.zeros(len(cosines), dtype=np.float64)
    for modality, share in shares.items():
        rows = _anchor_rows(calibration, modality, names, codes)
        if rows is None:
            return None
        best, spread, _ = rows
        z += share * (np.asarray(cosines, dtype=np.float64) - best) / spread
    return z


def mixed_taste(calibration: Calibration, shares: Mapping[str, float], names: Sequence[str], codes: np.ndarray,
                cosines: np.ndarray) -> np.ndarray | None:
    """How close each candidate is to a user's taste, in [0, 1]: its cosine to the preference
    vector placed between the direction's background (0) and its typical best match (1), each
    share of the vector in its own direction; None when a direction has no anchor.

    Why not z: a preference vector is a mean of liked items, never as close to one item as a
    best match is, so its z lies tens of spreads below zero and, weighted into the final z,
    drowns the query (every score 0.000, ranked by taste alone). Background-to-best keeps the
    taste a bounded share of the final score."""
    if not shares:
        return None
    taste = np.zeros(len(cosines), dtype=np.float64)
    for modality, share in shares.items():
        rows = _anchor_rows(calibration, modality, names, codes)
        if rows is None:
            return None
        best, _, background = rows
        scale = np.maximum(best - background, 1e-6)
        taste += share * np.clip((np.asarray(cosines, dtype=np.float64) - background) / scale, 0.0, 1.0)
    return taste


def unsquash(relevance: np.ndarray) -> np.ndarray:
    """The z whose squashed value is ``relevance`` (the inverse of `squash`, kept finite)."""
    r = np.clip(np.asarray(relevance, dtype=np.float64), 1e-9, 1 - 1e-9)
    return 2.0 * np.arctanh(2.0 * r - 1.0) / SLOPE - CENTRE


def part_z(calibration: Calibration, modalities: Sequence[str], names: Sequence[str], codes: np.ndarray,
           part_cosines: np.ndarray) -> np.ndarray | None:
    """z of each candidate (row) for each query part (column), each in its own direction."""
    columns = [mixed_z(calibration, {m: 1.0}, names, codes, part_cosines[:, j]) for j, m in enumerate(modalities)]
    if any(c is None for c in columns):
        return None
    return np.stack(columns, axis=1) if columns else np.zeros((len(codes), 0))


def notice_for(best_relevance: float | None, threshold: float) -> str | None:
    """The plain warning when even the best match is weak (None when calibrated relevance is
    unknown: a direction without anchors cannot be judged)."""
    if best_relevance is None or best_relevance >= threshold:
        return None
    return NOTICE
