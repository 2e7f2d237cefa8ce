"""The query planner: from a `Query` to ranked, filtered, personalised results.

1. Embed each part: text, decoded media (the core decodes files, with its bounds) or a ready
   vector. An LRU cache keyed by content makes a repeated part free.
2. Choose the indexes (one per target modality, or the joint one), an over-fetch k', and how
   filters apply: as a filter expression where the backend evaluates them (Milvus), else inside
   FAISS through ID selectors when they are selective, on the fetched results otherwise; either
   way every candidate is checked against the catalog (`passing_ids`, only the candidates, where
   the backend filtered), so nothing outside leaks.
3. Fuse. Early: one search with the weighted, renormalised sum of the part vectors. Late: one
   search per part (and per target), merged by a weighted sum of cosines or by reciprocal-rank
   fusion. Candidates are scored exactly from their stored vectors, so a candidate found by
   one part still gets its true score from the others.
4. Score (`scoring.py`): raw cosines, then calibrated relevance, so that candidates of every
   target rank together fairly (`calibration.py`: raw cosines of different directions are not
   comparable); personalise with the user's preference vector; drop candidates under the
   query's ``min_relevance``; keep each item once at its best vector (an audio item at its best
   window, with its time span), optionally diversify (MMR).
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from crossmodal.aligner.text_only import TextOnlyModel
from crossmodal.errors import QueryError
from crossmodal.search.calibration import CalibrationCache
from crossmodal.search.query import Query, QueryPart, SearchResult
from crossmodal.search.rerank import Preference, mmr_order
from crossmodal.search.scoring import mixed_order, score_candidates
from crossmodal.settings import Settings
from crossmodal.storage.collection import Collection

if TYPE_CHECKING:  # torch loads with the model, not with the planner
    from crossmodal.aligner.model import Aligner


@dataclass
class Plan:
    """What the planner decided for one query (printed by `explain`)."""

    parts: list[dict[str, Any]]
    targets: list[str]
    indexes: dict[str, str]
    k: int
    fetch: int
    fusion: str
    late_merge: str | None
    filters: dict[str, Any]
    filter_mode: str
    allowed: int | None
    user: str | None
    user_events: int
    beta: float
    mmr_lambda: float
    merge: str
    calibration: str = "none"
    """Where the calibration came from, or why there is none."""
    anchors: dict[str, Any] | None = None
    min_relevance: float | None = None
    best_relevance: float | None = None
    """The highest calibrated relevance of any candidate (None when uncalibrated)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _normalise(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    if norm < 1e-12:
        raise QueryError("the weighted query parts cancel out; give different parts or weights")
    return (v / norm).astype(np.float32)


def _members(ids: np.ndarray, allowed_sorted: np.ndarray) -> np.ndarray:
    """Which of ``ids`` are in the sorted ``allowed_sorted`` (a binary search per id, so a
    filter of many ids costs nothing per query)."""
    if len(allowed_sorted) == 0:
        return np.zeros(len(ids), dtype=bool)
    pos = np.minimum(np.searchsorted(allowed_sorted, ids), len(allowed_sorted) - 1)
    return allowed_sorted[pos] == ids


class EmbeddingCache:
    """A small LRU of query-part vectors keyed by content (the text, or the media's content key)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self.hits = 0
        self.lock = threading.Lock()

    @staticmethod
    def key(part: QueryPart) -> tuple[str, str] | None:
        if part.text is not None:
            return part.modality, "t:" + part.text
        if part.key is not None:
            return part.modality, "m:" + part.key
        return None

    def get(self, key: tuple[str, str] | None) -> np.ndarray | None:
        with self.lock:
            if key is None or key not in self.entries:
                return None
            self.entries.move_to_end(key)
            self.hits += 1
            return self.entries[key]

    def put(self, key: tuple[str, str] | None, vector: np.ndarray) -> None:
        if key is None or self.size <= 0:
            return
        with self.lock:
            self.entries[key] = vector
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)


class Planner:
    """Plans and runs queries against one collection with its aligner."""

    def __init__(self, collection: Collection, aligner: Aligner | TextOnlyModel, settings: Settings) -> None:
        self.collection = collection
        self.aligner = aligner
        self.settings = settings
        self.cache = EmbeddingCache(settings.search.embed_cache_size)
        self._filter_cache: OrderedDict[tuple[int, str], np.ndarray] = OrderedDict()
        self._filter_lock = threading.Lock()
        self.calibrations = CalibrationCache()
        self._text_encoder: Any = None  # fast_text.QueryTextEncoder of self.aligner, once built
        self._text_encoder_lock = threading.Lock()
        self._serving = False  # set once a server prepares the query text encoder (text_encoder)

    def text_encoder(self, prepare: bool = False) -> Any:
        """The query text encoder (`aligner.fast_text`, ``[search] text_tower``) of the torch model
        the planner holds, built on first use; None for a model without torch (`aligner.text_only`),
        which embeds texts itself. Quantising takes seconds for a large tower, more than a one-shot
        search saves by it, so until a server asks for it at load (``prepare``, `Engine.load`) the
        planner uses the fp32 path, which costs nothing to build and gives the model's vectors."""
        self._serving = self._serving or prepare  # even while the numpy text tower stands in
        aligner = self.aligner
        if isinstance(aligner, TextOnlyModel):  # torch may be half imported now, by the model loading behind it
            return None
        torch = sys.modules.get("torch")  # a torch model means torch is imported already
        if torch is None or not isinstance(aligner, torch.nn.Module):
            return None
        with self._text_encoder_lock:
            mode = self.settings.search.text_tower if self._serving else "fp32"
            current = self._text_encoder
            if current is None or current.aligner is not aligner or current.mode != mode:
                from crossmodal.aligner.fast_text import QueryTextEncoder, check_mode

                check_mode(self.settings.search.text_tower)
                self._text_encoder = QueryTextEncoder(aligner, mode)
            return self._text_encoder

    def embed_part(self, part: QueryPart) -> np.ndarray:
        """The part's vector in the shared space."""
        if part.vector is not None:
            v = np.asarray(part.vector, dtype=np.float32).reshape(-1)
            if v.shape[0] != self.aligner.embed_dim or not np.isfinite(v).all():
                raise QueryError(f"a query vector must hold {self.aligner.embed_dim} finite numbers")
            return _normalise(v)
        key = self.cache.key(part)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        if part.modality == "text":
            encoder = self.text_encoder()
            vec = (encoder or self.aligner).embed_texts([part.text])[0]
        elif part.media is None:
            raise QueryError(f"{part.modality}: the file {part.describe()} must be decoded before planning")
        elif part.modality == "image":
            vec = self.aligner.embed_images([part.media])[0]
        else:
            vec = self.aligner.embed_audio([part.media], sources=[part.describe()])[0].clip_vector
        self.cache.put(key, vec)
        return vec

    def _allowed(self, query: Query) -> np.ndarray | None:
        """Vector ids passing the filters; cached per catalog generation, since a UI repeats them."""
        f = query.filters
        if not f.active:
            return None
        key = (self.collection.catalog.generation, repr(f))
        with self._filter_lock:
            cached = self._filter_cache.get(key)
            if cached is not None:
                self._filter_cache.move_to_end(key)
                return cached
        time_range = None if f.after is None and f.before is None else (f.after, f.before)
        allowed = self.collection.catalog.filter_vector_ids(
            modalities=f.modalities or None, uri_glob=f.uri_glob, meta=f.meta or None, time_range=time_range)
        with self._filter_lock:
            self._filter_cache[key] = allowed
            while len(self._filter_cache) > 32:
                self._filter_cache.popitem(last=False)
        return allowed

    def run(self, query: Query, pref: Preference) -> tuple[Plan, list[SearchResult]]:
        """Plan, search, fuse, filter, personalise and rank one query."""
        s = self.settings
        fusion = query.fusion or s.search.fusion
        late_merge = (query.late_merge or s.search.late_merge) if fusion == "late" else None
        names = ["joint"] if query.targets == ("joint",) else list(query.targets)
        indexes = {n: self.collection.manifest["indexes"].get(n, {}).get("kind", "missing") for n in names}
        vectors = np.stack([self.embed_part(p) for p in query.parts])
        weights = np.array([p.weight for p in query.parts], dtype=np.float32)
        weights = weights / weights.sum()
        beta = s.personal.beta if pref.active else 0.0
        early = _normalise(weights @ vectors) if fusion == "early" else None
        if fusion == "early":
            # The final score (1 - beta) cos(q, x) + beta cos(u, x) is x . ((1 - beta) q + beta u), so one
            # search with that vector finds the exact personalised top k.
            probes = [_normalise((1 - beta) * early + beta * pref.vector) if beta > 0 else early]
        else:
            probes = list(vectors) + ([pref.vector] if beta > 0 else [])

        opened = {n: self.collection.index(n) for n in names}
        total = max((ix.ntotal for ix in opened.values()), default=0)
        all_vectors = sum(ix.ntotal for ix in opened.values())
        # A backend that evaluates filters itself (Milvus) gets them as an expression, and only its
        # candidates are checked against the catalog; otherwise the allowed ids are found first and
        # selective filters go in as ID selectors. Either way every candidate is checked below.
        pushdown = query.filters.active and all(ix.pushes_filters for ix in opened.values())
        allowed = None if pushdown else self._allowed(query)
        inside = allowed is not None and len(allowed) <= s.search.selective_fraction * max(all_vectors, 1)
        filter_mode = "inside the index (filter expression)" if pushdown else "none" if allowed is None else \
            "inside the index (ID selector)" if inside else "after the search (over-fetched)"
        fetch = min(max(query.k * s.search.overfetch, s.search.min_fetch), max(total, 1))
        while True:
            found: dict[int, str] = {}
            exhausted = True
            for probe in probes:
                for name, index in opened.items():
                    if index.ntotal == 0 or (allowed is not None and not len(allowed)):
                        continue
                    _, ids = self.collection.search(name, probe, fetch, selector_ids=allowed if inside else None,
                                                    filters=query.filters if pushdown else None)
                    ids = ids[0][ids[0] >= 0]
                    exhausted = exhausted and len(ids) < fetch
                    if allowed is not None:
                        ids = ids[_members(ids, allowed)]
                    found.update((int(i), name) for i in ids)
            if pushdown and found:  # the expression may pass more than the filters do, never less
                passing = set(self.collection.catalog.passing_ids(sorted(found), query.filters).tolist())
                found = {i: n for i, n in found.items() if i in passing}
            owners = self.collection.catalog.vector_owners(sorted(found))
            # A pushed-down filter that returned fewer than asked has nothing more to give.
            if len({item for item, _ in owners.values()}) >= query.k or fetch >= total or (pushdown and exhausted):
                break
            fetch = min(total, fetch * 4)

        plan = Plan(
            parts=[{"modality": p.modality, "query": p.describe(), "weight": round(float(w), 4)}
                   for p, w in zip(query.parts, weights)],
            targets=list(query.targets), indexes=indexes, k=query.k, fetch=fetch, fusion=fusion,
            late_merge=late_merge, filters=query.filters.as_dict(), filter_mode=filter_mode,
            allowed=None if allowed is None else int(len(allowed)), user=query.user, user_events=pref.events,
            beta=beta, mmr_lambda=s.personal.mmr_lambda, min_relevance=query.min_relevance,
            merge="candidates from every target are ranked together by calibrated relevance (raw cosines "
                  "of different directions are not comparable); each item appears once, at its best vector")
        calibration, plan.calibration = self.calibrations.get(self.collection)
        if calibration is not None:
            plan.anchors = calibration.describe([p.modality for p in query.parts], names)
        if not owners:
            return plan, []
        ids = np.array(sorted(owners), dtype=np.int64)
        x = np.stack([owners[int(i)][1] for i in ids])
        index_of = np.array([names.index(found[int(i)]) for i in ids], dtype=np.int64)
        sc = score_candidates(x, vectors, weights, early, late_merge, s.search.rrf_k, pref, beta, calibration,
                              [p.modality for p in query.parts], names, index_of)
        final = sc.final
        if not sc.calibrated:
            plan.merge = ("uncalibrated: the collection has no anchors for a direction this query needs, so "
                          "candidates are ranked by raw score; each item appears once, at its best vector")
            plan.calibration = f"{plan.calibration}; not applied"
        else:
            plan.best_relevance = round(float(sc.relevance.max()), 6)
        passing = np.ones(len(ids), dtype=bool)
        if query.min_relevance is not None and sc.relevance is not None:
            passing = sc.relevance >= query.min_relevance

        best: dict[int, int] = {}
        for row, vid in enumerate(ids):
            if not passing[row]:
                continue
            item = owners[int(vid)][0]
            if item not in best or final[row] > final[best[item]]:
                best[item] = row
        if not best:
            return plan, []
        rows = np.array(sorted(best.values()))
        if sc.final_z is not None and s.personal.mmr_lambda >= 1.0:
            order = mixed_order(sc.final_z[rows], index_of[rows], query.k)
        else:
            order = mmr_order(final[rows], x[rows], query.k, s.personal.mmr_lambda)
        chosen = [int(rows[i]) for i in order]
        hits = self.collection.catalog.describe([int(ids[r]) for r in chosen])
        results = []
        for r in chosen:
            h = hits.get(int(ids[r]))
            if h is None:
                continue
            label = h.meta.get("label")
            relevance = None if sc.relevance is None else round(float(sc.relevance[r]), 6)
            results.append(SearchResult(
                id=h.item_id, modality=h.modality, uri=h.uri, score=round(float(final[r]), 6),
                start=h.start if h.kind == "audio" else None, end=h.end if h.kind == "audio" else None,
                matched=h.kind, text=h.text if h.kind == "text" else h.meta.get("caption"),
                label=None if label is None else str(label),
                explanation=_explain(query, weights, sc, r, beta, names[index_of[r]], int(ids[r])) if query.explain
                else None, cosine=round(float(sc.cosine[r]), 6), relevance=relevance))
        return plan, results


def _explain(query: Query, weights: np.ndarray, sc: Any, r: int, beta: float, index: str, vid: int) -> dict[str, Any]:
    """Every part of one result's score: each part's cosine (and z, where calibrated), the query's
    raw cosine and calibrated relevance, the personal score, and the final score."""
    def z(values: np.ndarray | None) -> float | None:
        return None if values is None else round(float(values[r]), 4)

    parts = [{"modality": p.modality, "query": p.describe(), "weight": round(float(w), 4),
              "cosine": round(float(c), 6), "z": None if sc.part_z is None else round(float(sc.part_z[r, j]), 4)}
             for j, (p, w, c) in enumerate(zip(query.parts, weights, sc.part_cosines[r]))]
    return {"parts": parts, "index": index, "cosine": round(float(sc.cosine[r]), 6),
            "relevance": None if sc.relevance is None else round(float(sc.relevance[r]), 6),
            "personal": round(float(sc.personal[r]), 6) if beta > 0 else None,
            "taste": z(sc.personal_z) if beta > 0 else None,
            "beta": beta, "final": round(float(sc.final[r]), 6), "vector_id": vid}
