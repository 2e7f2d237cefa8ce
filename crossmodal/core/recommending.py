"""Recommendation for the engine: "for you" lists (`Recommender.recommend`) and the collaborative
model behind them, kept in the collection folder and refitted when the feedback changed.

The parts live in `crossmodal.recommend` (interactions, ALS, the blend); this module joins them
with the collection's item vectors, the user's preference vector (`search.rerank`) and MMR.
See docs/recommendation.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from crossmodal.errors import NotFoundError, QueryError, StorageError
from crossmodal.recommend.collaborative import MODEL_FILE, ALSParams, CollaborativeModel, fit_als
from crossmodal.recommend.explain import reasons
from crossmodal.recommend.graph import ItemGraph, file_of
from crossmodal.recommend.hybrid import METHODS, blend_scores, history_of
from crossmodal.recommend.interactions import Interactions
from crossmodal.search.query import MAX_K, TARGETS, Query, QueryPart, SearchResult, check_user, parse_targets
from crossmodal.search.rerank import mmr_order, preference_vector
from crossmodal.settings import Settings
from crossmodal.storage.catalog import Catalog
from crossmodal.storage.collection import Collection

LOG = logging.getLogger(__name__)
SHORTLIST = 20
"""Candidates per requested result that MMR chooses among (the best by score)."""
EXPLAIN_HISTORY = 50
"""Most recent liked items an explanation looks through."""


@dataclass(frozen=True)
class Recommendation:
    """One recommended item: what it is, where, its final score in [0, 1] and, on request, each
    source's part of it (content, collaborative, popularity, the collaborative weight)."""

    id: int
    modality: str
    uri: str
    score: float
    label: str | None
    text: str | None
    sources: dict[str, float | None] | None = None
    explanation: list[dict[str, Any]] | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("sources", "explanation"):
            if out[name] is None:
                out.pop(name)
        return out


@dataclass
class RecommendResponse:
    """A "for you" list: ``method`` asked for, ``used`` what ranked it (a cold-start user asking
    for hybrid gets popular), and the collaborative model's state (``model``)."""

    results: list[Recommendation]
    user: str
    method: str
    used: str
    history: int
    model: dict[str, Any] = field(default_factory=dict)
    widened: int = 0
    """Results that only the related-items graph scored (a thin list widened)."""

    def as_dict(self) -> dict[str, Any]:
        return {"user": self.user, "method": self.method, "used": self.used, "history": self.history,
                "model": self.model, "widened": self.widened, "results": [r.as_dict() for r in self.results]}


def check_k(k: Any, max_k: int = MAX_K) -> int:
    """A result count: an integer from 1 to ``max_k`` (a string of digits from a query string)."""
    if isinstance(k, str) and k.strip().isdigit():
        k = int(k)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max_k:
        raise QueryError(f"k: must be an integer from 1 to {max_k}, got {k!r}")
    return k


def check_flag(value: Any, name: str) -> bool:
    """A yes/no option: a bool, or from a query string true/false, 1/0, yes/no (empty: no)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, (str, int)) else None
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise QueryError(f"{name}: expected true or false, got {str(value)[:40]!r}")


def check_method(method: Any) -> str:
    if method not in METHODS:
        raise QueryError(f"method: {method!r} is not one of {list(METHODS)}")
    return method


def check_modalities(targets: Any) -> tuple[str, ...]:
    """Item modalities to recommend (text, image, audio; plurals accepted); default all."""
    names = parse_targets(targets)
    if names == ("joint",):
        raise QueryError("targets: recommendations are items of text, image or audio; 'joint' is a search index")
    return names


class Recommender:
    """The collaborative model of one collection and the "for you" lists made with it. Shared by
    an engine's threads: the model is fitted under a lock, once per change of the feedback."""

    def __init__(self, collection: Collection, settings: Settings) -> None:
        self.collection = collection
        self.settings = settings
        self._lock = threading.Lock()
        self._model: CollaborativeModel | None = None
        self._vectors: tuple[int, np.ndarray, np.ndarray, dict[int, dict]] | None = None
        self._graph: tuple[tuple, ItemGraph] | None = None

    @property
    def params(self) -> ALSParams:
        r = self.settings.recommend
        return ALSParams(r.factors, r.regularization, r.iterations, r.alpha)

    def interactions(self) -> Interactions:
        """Every user's feedback, as the collaborative model and popularity see it."""
        p = self.settings.personal
        return Interactions.from_events(self.collection.feedback.all_events(),
                                        {"like": p.like, "dislike": p.dislike, "click": p.click})

    def model(self, interactions: Interactions | None = None, refit: bool = False) -> CollaborativeModel | None:
        """The collaborative model fitted on the feedback as it is now: the stored one when its
        fingerprint matches, else fitted and stored. None when `[recommend] collaborative` is off
        (any stored model is then deleted) or too few users have feedback."""
        path = self.collection.folder / MODEL_FILE
        if not self.settings.recommend.collaborative:
            path.unlink(missing_ok=True)
            self._model = None
            return None
        interactions = interactions if interactions is not None else self.interactions()
        with self._lock:
            if len(interactions.users) < max(self.settings.recommend.min_users, 1):
                path.unlink(missing_ok=True)
                self._model = None
                return None
            fingerprint = interactions.fingerprint()
            model = self._model
            if model is None or model.fingerprint != fingerprint or refit:
                model = None if refit else self._stored()
                if model is None or model.fingerprint != fingerprint or model.params != self.params:
                    model = fit_als(interactions, self.params)
                    try:
                        model.save(self.collection.folder)
                    except OSError as exc:  # a read-only folder: the list is still made, and refitted next time
                        LOG.warning("could not store the collaborative model in %s: %s", self.collection.folder, exc)
                    LOG.info("fitted the collaborative model on %d pairs of %d users", len(interactions),
                             len(interactions.users))
                self._model = model
            return model

    def _stored(self) -> CollaborativeModel | None:
        """The stored model; a damaged one is derived data, so it is refitted rather than refused."""
        try:
            return CollaborativeModel.load(self.collection.folder)
        except StorageError as exc:
            LOG.warning("%s; fitting it again", exc)
            return None

    def forget(self, user: str) -> bool:
        """Drop the stored model when it holds ``user`` (deleted), or when it cannot be read to
        tell: nothing of them stays on disk, and the next list refits without them. Returns
        whether it did."""
        with self._lock:
            path = self.collection.folder / MODEL_FILE
            try:
                stored = CollaborativeModel.load(self.collection.folder)
                held = stored is not None and stored.knows(user)
            except StorageError:
                held = True
            if held:
                path.unlink(missing_ok=True)
            if held or (self._model is not None and self._model.knows(user)):
                self._model = None
            return held

    def stored_about(self, user: str) -> dict[str, Any]:
        """What the stored collaborative model holds about ``user`` (for an export)."""
        model = self._stored()
        factors = model.user_vector(user) if model is not None else None
        return {"in_model": factors is not None, "factors": factors}

    def _items(self) -> tuple[np.ndarray, np.ndarray, dict[int, dict]]:
        """(item ids, one unit vector per item, filter fields per item), cached per catalog generation."""
        catalog = self.collection.catalog
        generation = catalog.generation
        cached = self._vectors
        if cached is not None and cached[0] == generation:
            return cached[1], cached[2], cached[3]
        fields = catalog.filter_fields()
        vectors = catalog.item_vectors(list(fields))
        ids = np.array(sorted(vectors), dtype=np.int64)
        dim = catalog.dim or 0
        matrix = np.stack([vectors[int(i)] for i in ids]) if len(ids) else np.zeros((0, dim), dtype=np.float32)
        self._vectors = (generation, ids, matrix, fields)
        return ids, matrix, fields

    def graph(self, interactions: Interactions | None = None) -> ItemGraph | None:
        """The related-items graph of the catalog and the feedback as they are now, rebuilt when
        either changed (milliseconds: `recommend.graph`); None when `[recommend] graph` is off.
        Without collaborative signal it links by metadata and files only."""
        s = self.settings.recommend
        if not s.graph:
            return None
        fields = self._items()[2]
        if s.collaborative:
            interactions = interactions if interactions is not None else self.interactions()
        else:
            interactions = None
        key = (self.collection.catalog.generation, interactions.fingerprint() if interactions else "",
               tuple(s.graph_keys), s.graph_max_group)
        cached = self._graph
        if cached is not None and cached[0] == key:
            return cached[1]
        graph = ItemGraph.build(fields, interactions, s.graph_keys, s.graph_max_group)
        self._graph = (key, graph)
        return graph

    def recommend(self, user: Any, k: Any = 10, targets: Any = None, include_rated: bool = False,
                  explain: bool = False, method: Any = "hybrid", refit: bool = False,
                  max_k: int = MAX_K) -> RecommendResponse:
        """A ranked list for ``user`` with no query (see `Engine.recommend`)."""
        user, k, method = check_user(user), check_k(k, max_k), check_method(method)
        modalities = check_modalities(targets)
        include_rated, explain = check_flag(include_rated, "include_rated"), check_flag(explain, "explain")
        interactions = self.interactions()
        model = self.model(interactions, refit=refit) if method in ("hybrid", "collaborative") or refit else None
        ids, matrix, fields = self._items()
        keep = np.array([fields[int(i)]["modality"] in modalities for i in ids], dtype=bool)
        rated = {item for item, _, _ in self.collection.feedback.events(user)}
        if not include_rated and rated:
            keep &= ~np.isin(ids, np.fromiter(rated, dtype=np.int64, count=len(rated)))
        ids, matrix = ids[keep], matrix[keep]
        item_modality = np.array([fields[int(i)]["modality"] for i in ids])
        pref = preference_vector(self.collection.feedback, self.collection.catalog, user, self.settings.personal)
        content = matrix @ pref.vector if pref.active and method in ("hybrid", "content") and len(ids) else None
        cf = model.scores(user, ids) if model is not None else None
        history = interactions.user_counts().get(user, 0)
        s = self.settings.recommend
        item_counts = interactions.item_counts()
        liked = self._liked(interactions, user)
        graph = self.graph(interactions) if liked or explain else None
        co_liked = graph.scores(liked, ids, ("co_liked",)) if graph is not None and s.co_liked > 0 else None
        scores = blend_scores(method, content, item_modality, cf, history_of(ids, item_counts),
                              history, s.user_history, s.item_history, co_liked, s.co_liked)
        final, by_graph = widen(scores.final, scores.scored(), graph, liked, ids, k * SHORTLIST)
        shortlist = np.argsort(-final, kind="stable")[:max(k * SHORTLIST, k)]
        top = float(final[shortlist].max()) if len(shortlist) else 0.0
        relevance = final[shortlist] / top if top > 0 else final[shortlist]  # MMR's balance: not the scale's
        order = [int(shortlist[i]) for i in mmr_order(relevance, matrix[shortlist], k, s.mmr_lambda)]
        why = self._explainer(user, liked, graph, item_counts, scores.used) if explain else None
        results = []
        for row in order:
            item = int(ids[row])
            meta = fields[item]["meta"]
            sources = None
            if explain:
                sources = {name: None if not np.isfinite(v[row]) else round(float(v[row]), 6) for name, v in (
                    ("content", scores.content), ("collaborative", scores.collaborative),
                    ("popularity", scores.popularity), ("cf_weight", scores.cf_weight), ("graph", by_graph))}
            results.append(Recommendation(item, fields[item]["modality"], fields[item]["uri"],
                                          round(float(final[row]), 6), meta.get("label"),
                                          self._text(item, fields[item]), sources,
                                          why(item, matrix[row], np.isfinite(scores.content[row])) if why else None))
        state = {"collaborative": self.settings.recommend.collaborative, "fitted": model is not None,
                 "users": len(model.users) if model is not None else 0,
                 "items": len(model.items) if model is not None else 0}
        widened = sum(1 for row in order if np.isfinite(by_graph[row]))
        return RecommendResponse(results, user, method, scores.used, history, state, widened)

    @staticmethod
    def _liked(interactions: Interactions, user: str) -> dict[int, float]:
        """The user's positive history: item -> net weight (liked or clicked, not disliked)."""
        if user not in interactions.users:
            return {}
        mine = (interactions.rows == interactions.users.index(user)) & (interactions.values > 0)
        pairs = zip(interactions.cols[mine], interactions.values[mine])
        return {int(interactions.items[c]): float(v) for c, v in pairs}

    def _explainer(self, user: str, liked: dict[int, float], graph: ItemGraph | None, item_counts: dict[int, int],
                   used: str) -> Callable[[int, np.ndarray, bool], list[dict[str, Any]]]:
        """A function giving one result's reasons (`recommend.explain`), with the user's liked
        items named (most recent first, at most `EXPLAIN_HISTORY`) and their vectors at hand."""
        recent: list[int] = []
        for item, _, _ in reversed(self.collection.feedback.events(user)):
            if item in liked and item not in recent:
                recent.append(item)
        recent = recent[:EXPLAIN_HISTORY]
        all_ids, all_matrix, fields = self._items()
        rows = np.searchsorted(all_ids, np.array(recent, dtype=np.int64))
        known = [(h, r) for h, r in zip(recent, rows) if r < len(all_ids) and all_ids[r] == h]
        vectors = all_matrix[[r for _, r in known]] if known else None
        names = {h: self._name(h, fields[h]) for h, _ in known}
        own = set(liked)

        def why(item: int, vector: np.ndarray, by_content: bool) -> list[dict[str, Any]]:
            nearest = None
            if by_content and vectors is not None:
                nearest = known[int(np.argmax(vectors @ vector))][0]
            return reasons(item, [h for h, _ in known], graph, names, nearest=nearest, own_likes=own,
                           likers=item_counts.get(item, 0), used=used)
        return why

    def _name(self, item: int, fields: dict) -> str:
        """How an explanation names an item: a text's opening words, else its file's name."""
        if fields["modality"] == "text":
            text = self._text(item, fields) or ""
            return f'"{text[:40]}…"' if len(text) > 40 else f'"{text}"'
        return file_of(fields["uri"]).replace("\\", "/").rsplit("/", 1)[-1]

    def _text(self, item: int, fields: dict) -> str | None:
        """A text item's text (its first segment), else its caption, if any."""
        if fields["modality"] != "text":
            return fields["meta"].get("caption")
        found = self.collection.catalog.item(item)
        segments = [s["text"] for s in (found or {}).get("segments", []) if s.get("text")]
        return segments[0] if segments else None


def widen(final: np.ndarray, scored: np.ndarray, graph: ItemGraph | None, liked: dict[int, float],
          ids: np.ndarray, shortlist: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores with a thin list widened: when the method scored fewer candidates than the
    shortlist MMR picks from, the unscored ones (otherwise tied at 0, in id order) are ranked by
    their links to the user's liked items, below every scored one. Returns the scores and each
    candidate's graph score where the graph decided it (NaN elsewhere)."""
    by_graph = np.full(len(final), np.nan)
    if graph is None or not liked or int(scored.sum()) >= shortlist:
        return final, by_graph
    near = graph.scores(liked, ids)
    fill = ~scored & (near > 0)
    if not fill.any():
        return final, by_graph
    floor = float(final[scored].min()) if scored.any() else 1.0
    out = final.copy()
    out[fill] = 0.999 * floor * near[fill]
    by_graph[fill] = near[fill]
    return out, by_graph


def similar_query(catalog: Catalog, item: dict[str, Any], k: int, targets: Any, user: str | None,
                  explain: bool) -> Query:
    """The search that finds items like ``item``: its stored vector (fused if it has one, else
    the mean of its vectors) as a part of its own modality, so every target is scored in its own
    calibrated direction, and one more result than asked (the item finds itself first)."""
    vector = catalog.item_vectors([item["id"]]).get(item["id"])
    if vector is None:
        raise NotFoundError(f"item {item['id']}: it has no sound vector to compare with (see `crossmodal check`)")
    return Query((QueryPart(item["modality"], vector=vector),), targets=TARGETS if targets is None else targets,
                 k=min(k + 1, MAX_K), user=user or None, explain=check_flag(explain, "explain"))


def without_item(results: list[SearchResult], item_id: int, k: int) -> list[SearchResult]:
    """``results`` without the item itself (as a result or as a listed copy), at most ``k``."""
    return [replace(r, copies=[c for c in r.copies if c.get("id") != item_id])
            for r in results if r.id != item_id][:k]


__all__: Sequence[str] = ["Recommendation", "RecommendResponse", "Recommender", "check_flag", "check_k",
                          "similar_query", "without_item"]
