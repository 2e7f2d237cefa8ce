"""The Python API: an `Engine` over one collection, used by the CLI and the HTTP server alike.

    from crossmodal.engine import Engine
    from crossmodal.query import Query, QueryPart

    with Engine.open("demo") as engine:
        hits = engine.search(Query((QueryPart("text", text="seven"),), targets=("image",), k=5, user="ana"))
        engine.feedback("ana", hits.results[0].id, "like")

One engine may serve many threads at once: they share the loaded model and the collection's
indexes (FAISS and torch inference are safe for concurrent reads; a Milvus backend is a client
of its server), each thread has its own SQLite connection, and only the planner's small caches
take a lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossmodal.aligner.model import Aligner
from crossmodal.aligner.registry import load_aligner
from crossmodal.catalog import FEEDBACK_EVENTS, CatalogError
from crossmodal.index.collection import Collection, collection_folder
from crossmodal.planner import Plan, Planner
from crossmodal.query import Query, QueryError, SearchResult
from crossmodal.rerank import export_history, preference_vector
from crossmodal.settings import DEFAULT_INDEX_ROOT, Settings, load_settings


@dataclass
class SearchResponse:
    """Results, and the plan that produced them."""

    results: list[SearchResult]
    plan: Plan

    def as_dict(self, explain: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"results": [r.as_dict() for r in self.results]}
        if explain:
            out["plan"] = self.plan.as_dict()
        return out


class Engine:
    """Search, explain, feedback and user history over one collection."""

    def __init__(self, collection: Collection, aligner: Aligner, settings: Settings) -> None:
        self.collection = collection
        self.aligner = aligner
        self.settings = settings
        self.planner = Planner(collection, aligner, settings)

    @classmethod
    def open(cls, index: str | Path = "default", root: str | Path = DEFAULT_INDEX_ROOT,
             settings: Settings | None = None, model: str | None = None, aligner: Aligner | None = None) -> Engine:
        """Open a collection by name (under ``root``) or folder, with its own model unless told
        otherwise (another model is refused by the collection)."""
        folder = collection_folder(str(index), Path(root))
        collection = Collection.open(folder)
        try:
            chosen = model is not None or aligner is not None
            if aligner is None:
                aligner = load_aligner(model or collection.model.ref)
            if chosen:
                from crossmodal.index.build import model_info

                collection.check_model(model_info(aligner, model or collection.model.ref))
            for name in collection.manifest["indexes"]:
                collection.index(name)
        except BaseException:
            collection.close()
            raise
        settings = settings or load_settings()
        from crossmodal.index.faiss_index import set_threads

        set_threads(settings.search.faiss_threads)
        return cls(collection, aligner, settings)

    def close(self) -> None:
        self.collection.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stale(self) -> bool:
        return self.collection.stale

    def search(self, query: Query) -> SearchResponse:
        """Ranked results for a query, personalised when it names a user with history."""
        self.collection.refresh()
        pref = preference_vector(self.collection.catalog, query.user, self.settings.personal)
        plan, results = self.planner.run(query, pref)
        return SearchResponse(results, plan)

    def explain(self, query: Query) -> SearchResponse:
        """`search` with the plan and every result's score parts."""
        from dataclasses import replace

        return self.search(replace(query, explain=True))

    def feedback(self, user: str, item_id: int, event: str) -> int:
        """Record like / dislike / click; it shapes the user's very next query."""
        if event not in FEEDBACK_EVENTS:
            raise QueryError(f"event: {event!r} is not one of {list(FEEDBACK_EVENTS)}")
        if not user or not user.strip() or len(user) > 200:
            raise QueryError("user: must be a non-empty name of at most 200 characters")
        with self.collection.catalog.transaction():
            try:
                return self.collection.catalog.add_feedback(user, int(item_id), event)
            except CatalogError as exc:
                raise QueryError(f"item: {exc}") from None

    def export_user(self, user: str) -> dict[str, Any]:
        return export_history(self.collection.catalog, user)

    def delete_user(self, user: str) -> int:
        """Forget a user's history; their next query is neutral again. Returns events deleted."""
        with self.collection.catalog.transaction():
            return self.collection.catalog.delete_user(user)

    def item(self, item_id: int) -> dict[str, Any] | None:
        return self.collection.catalog.item(item_id)
