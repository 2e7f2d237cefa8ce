"""The core API: an `Engine` over one collection, the only door the CLI, the HTTP server, the
demo and Python code go through.

    from crossmodal import Engine, query_from_fields

    with Engine.open("mine", create=True) as engine:            # indexes/mine, the starter model
        engine.index(["photos/", "clips/"])
        response = engine.search(query_from_fields({"text": "a dog barking", "k": 5}))
        engine.feedback("ana", response.results[0].id, "like")

One engine may serve many threads at once: they share the loaded model and the collection's
indexes (FAISS and torch inference are safe for concurrent reads; a Milvus backend is a client
of its server), each thread has its own SQLite connection, and only small caches take a lock.
The model and the indexes are loaded on first use, so commands that need neither (feedback,
user history, removal) do not pay for them; a server calls `load` at start instead. A text
query may not need torch at all (`core.query_model`).

Longer than 400 lines because it is the whole public surface in one place; each method only
checks its arguments and delegates (`indexing`, `checking`, `query_model`, `recommending`,
`item_media` hold the work).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossmodal import __version__
from crossmodal.aligner.registry import DEFAULT_MODEL, load_aligner, reference_of
from crossmodal.core.checking import CheckReport, check_collection
from crossmodal.core.indexing import IndexReport, check_backend_request, index_paths, model_info, remove_items
from crossmodal.core.item_media import ItemMedia, item_media, thumbnail_png
from crossmodal.core.models import check_collection_model, check_query_modalities
from crossmodal.core.query_inputs import decode_query
from crossmodal.core.query_model import ModelSlot
from crossmodal.core.recommending import Recommender, RecommendResponse, check_k, similar_query, without_item
from crossmodal.errors import CrossmodalError, NotFoundError, QueryError, ReadOnlyError, StorageError
from crossmodal.items import Root
from crossmodal.search.calibration import compute_calibration, notice_for
from crossmodal.search.duplicates import DuplicateGroup, collapsed_search, duplicate_groups
from crossmodal.search.planner import Plan, Planner
from crossmodal.search.query import MAX_K, Query, SearchResult, check_user, item_id_from
from crossmodal.search.rerank import preference_vector
from crossmodal.settings import DEFAULT_COLLECTION, DEFAULT_ROOT, Settings, load_settings
from crossmodal.storage.collection import Collection, clear_collection, collection_folder
from crossmodal.storage.feedback import FEEDBACK_EVENTS
from crossmodal.storage.locks import writer_lock
from crossmodal.storage.manifest import MANIFEST, ModelInfo, backend_spec, new_backend_spec, read_manifest
from crossmodal.storage.secrets import collection_secret

if TYPE_CHECKING:  # torch loads with the model, not with the engine
    from crossmodal.aligner.model import Aligner


def set_search_threads(threads: int) -> int:
    """OpenMP threads for index searches in this process (0: all cores); returns the previous
    count. A process-wide setting, so only a front end that owns the process calls it."""
    from crossmodal.storage.backends.faiss_search import set_threads

    return set_threads(threads)


def set_model_threads(threads: int) -> None:
    """Torch threads for model forwards in this process (0: torch's default, all cores). A
    process-wide setting, for a front end that owns the process: before torch is imported it is
    set through the environment torch reads at import, so a server whose model loads later does
    not import torch early for it."""
    if threads <= 0:
        return
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)


@dataclass
class SearchResponse:
    """Results, and the plan that produced them; ``notice`` says plainly when even the best match
    is weak by calibrated relevance (the model may not know this kind of content)."""

    results: list[SearchResult]
    plan: Plan
    notice: str | None = None

    def as_dict(self, explain: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"results": [r.as_dict() for r in self.results],
                               "best_relevance": self.plan.best_relevance, "weak": self.notice is not None,
                               "notice": self.notice}
        if explain:
            out["plan"] = self.plan.as_dict()
        return out


@dataclass(frozen=True)
class RemoveReport:
    """What `Engine.remove` did: how many items went, and which ids or uris were not there."""

    removed: int
    not_found: list

    def as_dict(self) -> dict[str, Any]:
        return {"removed": self.removed, "not_found": self.not_found}


def _recorded_model(folder: Path) -> str | None:
    """The model reference a collection's manifest records, if it can be read."""
    try:
        return str(read_manifest(folder)["model"]["ref"])
    except (CrossmodalError, KeyError, TypeError):
        return None


class Engine:
    """Index, search, feedback and user history over one collection, with its own model."""

    def __init__(self, collection: Collection, settings: Settings, model: str | None = None,
                 aligner: Aligner | None = None) -> None:
        self.collection = collection
        self.settings = settings
        self._models = ModelSlot(collection, settings, model, aligner)
        self._media_gate = threading.BoundedSemaphore(max(1, settings.search.max_concurrent_media))
        collection.calibrate = compute_calibration  # published with the indexes by every writer
        self.recommender = Recommender(collection, settings)  # its collaborative model, `recommend`

    @classmethod
    def open(cls, collection: str | Path = DEFAULT_COLLECTION, *, root: str | Path = DEFAULT_ROOT,
             settings: Settings | None = None, model: str | None = None, aligner: Aligner | None = None,
             create: bool = False, rebuild: bool = False) -> Engine:
        """Open a collection by name (a folder under ``root``) or by path.

        ``create`` makes it when it does not exist yet, bound to ``model`` (default: the starter
        model) and to the backend the settings name. ``rebuild`` first deletes what it holds,
        under its writer lock. An existing collection is searched with its own model; naming
        another is refused (its vectors would not be comparable)."""
        settings = settings or load_settings()
        folder = collection_folder(str(collection), Path(root))
        token = settings.index.milvus_token or None
        if rebuild or (create and not (folder / MANIFEST).is_file()):
            with writer_lock(folder):
                if rebuild:
                    model = model or _recorded_model(folder)  # a rebuild keeps the collection's model
                    clear_collection(folder, token)
                if not (folder / MANIFEST).is_file():
                    ref = model or (reference_of(aligner) if aligner is not None else DEFAULT_MODEL)
                    aligner = aligner or load_aligner(ref)
                    spec = new_backend_spec(settings.index.backend or "faiss", folder.name, settings.index.milvus_uri)
                    coll = Collection.create(folder, model_info(aligner, ref), spec, token)
                    return cls(coll, settings, ref, aligner)
        return cls._checked(Collection.open(folder, milvus_token=token), settings, model, aligner)

    @classmethod
    def _checked(cls, collection: Any, settings: Settings, model: str | None, aligner: Aligner | None) -> Engine:
        """An engine on an opened collection whose model, when one is named, is the collection's own
        (the collection is closed if not)."""
        engine = cls(collection, settings, model, aligner)
        try:
            if model is not None or aligner is not None:
                check_collection_model(collection, aligner or engine._models.some_model(),
                                       model or collection.model.ref)
        except BaseException:
            collection.close()
            raise
        return engine

    @classmethod
    def open_replica(cls, milvus_uri: str, prefix: str, *, token: str | None = None, settings: Settings | None = None,
                     model: str | None = None, aligner: Aligner | None = None) -> Engine:
        """A search node: the collection ``prefix`` searched from its Milvus server alone, on any
        machine (`storage.replica`). It searches, explains and shows items and their files (where
        this machine sees them at the same paths); it changes nothing and keeps no users."""
        from crossmodal.storage.replica import Replica  # pymilvus, only for a search node

        settings = settings or load_settings()
        return cls._checked(Replica(milvus_uri, prefix, token or settings.index.milvus_token or None), settings,
                            model, aligner)

    @property
    def read_only(self) -> bool:
        """True for a search node (`open_replica`)."""
        return bool(getattr(self.collection, "read_only", False))

    def _needs_folder(self, what: str) -> None:
        if self.read_only:
            raise ReadOnlyError(f"{what} needs the collection folder (the catalog and users' feedback); collection "
                                f"{self.name!r} is open as a search node: ask the server on the indexer's machine")

    def close(self) -> None:
        self.collection.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # What it is.
    @property
    def name(self) -> str:
        return self.collection.name

    @property
    def folder(self) -> Path | None:
        """The collection folder; None for a search node."""
        return self.collection.folder

    @property
    def model(self) -> ModelInfo:
        """The model the collection's vectors come from."""
        return self.collection.model

    @property
    def stale(self) -> bool:
        """True when the catalog holds changes the indexes do not (an interrupted run)."""
        return self.collection.stale

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities the collection's model embeds (an open_clip model used as it is has no
        audio tower)."""
        return self._models.some_model().modalities

    @property
    def model_loaded(self) -> bool:
        """Whether the model is in memory yet (commands that need no embedding never load it)."""
        return self._models.loaded

    @property
    def aligner(self) -> Aligner:
        """The collection's model, loaded on first use."""
        return self._models.aligner

    @property
    def planner(self) -> Planner:
        """The query planner, with the loaded model."""
        return self._models.planner

    def load(self, wait: bool = True) -> Engine:
        """Load the model and open every index now (a server does this before its first request).

        With ``wait=False``, when the model's text tower runs without torch (and torch is not
        loaded yet), only what a text query needs is ready on return (the indexes, the
        calibration, that text tower, checked against the collection's model) and the model
        loads in a background thread; a query that needs it waits for it. Otherwise it is the
        same as ``wait=True``."""
        planner = self._models.load(wait)
        for name in self.collection.manifest["indexes"]:
            self.collection.index(name)
        planner.calibrations.get(self.collection)  # an older collection's calibration, computed now
        planner.text_encoder(prepare=True)  # query text tower (int8 is quantised here), not on the first request
        return self

    def counts(self) -> dict[str, int]:
        return self.collection.catalog.counts()

    def health(self) -> dict[str, Any]:
        """The collection's state for a health check. ``status`` is "damaged" when the cheap checks
        find anything wrong (a damaged or missing file, an index refused, catalog errors or damaged
        vectors met since opening), with each finding (paths shown inside the collection folder,
        which is shown by name: a health check may be public); `check` looks at everything."""
        findings: list[str] = []
        items, stale = None, None
        try:
            self.collection.refresh()
        except StorageError as exc:
            findings.append(str(exc))
        findings += self.collection.health()
        try:
            items, stale = self.counts().get("items", 0), self.stale
        except StorageError as exc:
            findings.append(str(exc))
        out: dict[str, Any] = {"status": "damaged" if findings else "ok", "collection": self.name,
                               "model": self.model.model_id, "model_description": self.model_description,
                               "items": items, "stale": stale, "version": __version__}
        if findings:
            shown = list(dict.fromkeys(findings))
            for folder in () if self.folder is None else (str(self.folder.resolve()), str(self.folder)):
                shown = [text.replace(folder + os.sep, "").replace(folder, self.name) for text in shown]
            out.update(finding=shown[0], findings=shown)
        return out

    @property
    def model_description(self) -> str | None:
        """What the model knows, from its config's ``description`` (None until it is loaded: a
        health check must not load a model)."""
        return self._models.description

    def check(self, repair: bool = False, wait: float = 0.0) -> CheckReport:
        """Verify everything the collection holds (catalog integrity, every stored vector, every
        index against the catalog, leftovers of killed runs); with ``repair``, under the writer
        lock, rebuild what the catalog can rebuild and delete the leftovers. What cannot be
        repaired is reported (see `crossmodal.core.checking`)."""
        self._needs_folder("checking")
        if not repair:
            self.collection.refresh()
            return check_collection(self.collection, self.settings.index)
        with self.collection.writer_lock(wait):
            self.collection.refresh()
            return check_collection(self.collection, self.settings.index, repair=True)

    # Writing content (each holds the collection's writer lock).
    def index(self, paths: Sequence[str | Path], *, prune: bool = False, progress: bool = True,
              on_batch: Callable[[int], None] | None = None, wait: float = 0.0,
              follow_symlinks: bool = False) -> IndexReport:
        """Index files, folders and JSONL item lists, incrementally, and publish the indexes.
        The paths become the collection's roots: only files inside them are read and served
        (``follow_symlinks`` follows links out of them, recording each target as a root).
        ``wait`` is how long to wait for another writer before giving up."""
        with self.collection.writer_lock(wait):
            self.collection.refresh()
            check_backend_request(self.collection, self.settings.index)
            return index_paths(self.collection, self.aligner, paths, self.settings, prune=prune,
                               progress=progress, on_batch=on_batch, follow_symlinks=follow_symlinks)

    def remove(self, item_ids: Sequence[int] = (), uris: Sequence[str] = (), wait: float = 0.0) -> RemoveReport:
        """Remove items by catalog id and by uri."""
        with self.collection.writer_lock(wait):
            self.collection.refresh()
            removed, missing = remove_items(self.collection, item_ids, uris, self.settings.index)
        return RemoveReport(removed, missing)

    def migrate(self, to: str, milvus_uri: str = "", wait: float = 0.0) -> dict[str, Any]:
        """Move the indexes to another backend (or Milvus server), copying the catalog's vectors:
        nothing is re-embedded."""
        with self.collection.writer_lock(wait):
            self.collection.refresh()
            before = backend_spec(self.collection.manifest)
            spec = new_backend_spec(to, self.name, milvus_uri)
            manifest = self.collection.migrate(spec, self.settings.index)
        return {"collection": self.name, "from": before, "backend": manifest["backend"],
                "indexes": manifest["indexes"]}

    # Searching.
    def search(self, query: Query) -> SearchResponse:
        """Ranked results for a query, personalised when it names a user with history. Image and
        audio files are checked and decoded here, within the `[search]` bounds."""
        try:
            return self._search(query)
        except StorageError:
            # A search node may still name collections the indexer dropped after publishing new ones.
            if self.read_only and self.collection.refresh(now=True):  # type: ignore[call-arg]
                return self._search(query)
            raise

    def _search(self, query: Query) -> SearchResponse:
        self.collection.refresh()
        planner = self._models.planner_for(query)
        check_query_modalities(query, planner.aligner)
        if any(p.path is not None and p.vector is None for p in query.parts):
            with self._media_gate:  # decoded media and its activations are the memory a query costs
                query = decode_query(query, self.settings.search)
                query = replace(query, parts=tuple(p.embedded(planner.embed_part(p)) if p.media is not None
                                                   else p for p in query.parts))
        # A search node keeps no feedback (and no duplicate signatures): neutral and uncollapsed.
        pref = preference_vector(self.collection.feedback, self.collection.catalog,
                                 None if self.read_only else query.user, self.settings.personal)
        collapse = self.settings.search.collapse_duplicates if query.collapse is None else query.collapse
        collapse = collapse and not self.read_only
        if collapse:  # near-duplicates as one result each: ask for more, then group (search/duplicates.py)
            plan, results = collapsed_search(lambda n: planner.run(replace(query, k=n), pref), query.k,
                                             self.collection.catalog, self.settings.search.duplicate_threshold)
            plan = replace(plan, k=query.k)
        else:
            plan, results = planner.run(query, pref)
        return SearchResponse(results, plan, notice_for(plan.best_relevance, self.settings.search.weak_relevance))

    def explain(self, query: Query) -> SearchResponse:
        """`search` with the plan and every result's score parts."""
        return self.search(replace(query, explain=True))

    def duplicates(self, threshold: float | None = None) -> list[DuplicateGroup]:
        """Every group of near-duplicate items (copies of one content in other files), by
        content fingerprints at cosine ``threshold`` (default `[search] duplicate_threshold`)."""
        threshold = self.settings.search.duplicate_threshold if threshold is None else threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            raise QueryError(f"threshold: expected a number above 0 and at most 1, got {threshold!r}")
        self._needs_folder("finding duplicates")
        self.collection.refresh()
        return duplicate_groups(self.collection.catalog, float(threshold))

    # People.
    def feedback(self, user: str, item_id: int | str, event: str) -> int:
        """Record like / dislike / click; it shapes the user's very next query."""
        if not isinstance(event, str) or event not in FEEDBACK_EVENTS:
            raise QueryError(f"event: expected one of {list(FEEDBACK_EVENTS)}")
        self._needs_folder("feedback")
        return self.collection.feedback.add(check_user(user), item_id_from(item_id), event)

    def export_user(self, user: str) -> dict[str, Any]:
        """Everything stored about a user: their events and their collaborative model row."""
        self._needs_folder("a user's history")
        out = self.collection.feedback.export(check_user(user))
        out["collaborative"] = self.recommender.stored_about(user)
        return out

    def delete_user(self, user: str) -> int:
        """Forget a user's history (their next query is neutral again) and drop a stored collaborative
        model that holds them (the next list refits without them). Returns events deleted."""
        self._needs_folder("deleting a user's history")
        deleted = self.collection.feedback.delete_user(check_user(user))
        self.recommender.forget(user)
        return deleted

    # Recommendation (docs/recommendation.md).
    def recommend(self, user: str, k: int = 10, targets: str | Sequence[str] | None = None, *,
                  include_rated: bool = False, explain: bool = False, method: str = "hybrid",
                  refit: bool = False, max_k: int = MAX_K) -> RecommendResponse:
        """A "for you" list for ``user`` with no query, by ``method`` (content, collaborative, popular or
        hybrid: `core.recommending`), items they reacted to left out unless ``include_rated``."""
        self._needs_folder("recommending")
        self.collection.refresh()
        return self.recommender.recommend(user, k, targets, include_rated, explain, method, refit, max_k)

    def similar(self, item_id: int | str, k: int = 10, targets: str | Sequence[str] | None = None, *,
                user: str | None = None, explain: bool = False, max_k: int = MAX_K) -> SearchResponse:
        """"More like this": a search with the item's own stored vector as the query (so scores
        are calibrated relevance), over every target, the item itself left out; personalised
        when ``user`` has history (`core.recommending.similar_query`)."""
        item_id, k = item_id_from(item_id), check_k(k, max_k)
        self._needs_folder("more like this")
        self.collection.refresh()
        query = similar_query(self.collection.catalog, self._item_or_error(item_id), k, targets, user, explain)
        response = self.search(query)
        response.results = without_item(response.results, item_id, k)
        return response

    # Items.
    def item(self, item_id: int) -> dict[str, Any] | None:
        """One catalogued item: modality, uris, metadata, segments; None when there is none."""
        if isinstance(item_id, bool) or not isinstance(item_id, int) or not 0 < item_id < 2**63:
            return None
        return self.collection.catalog.item(item_id)

    def _item_or_error(self, item_id: int) -> dict[str, Any]:
        item = self.item(item_id)
        if item is None:
            raise NotFoundError(f"no item {item_id}")
        return item

    def media(self, item_id: int) -> ItemMedia:
        """The item's catalogued file (with its sniffed type) or, for a text item, its text. Only
        a regular file inside the collection's roots is given, checked now."""
        return item_media(self._item_or_error(item_id), self.collection.roots.all())

    def thumbnail(self, item_id: int, size: int | str = 256) -> bytes:
        """A PNG thumbnail of an image item."""
        return thumbnail_png(self._item_or_error(item_id), self.collection.roots.all(), size,
                             self.settings.ingest.max_image_pixels)

    def secret(self, name: str) -> bytes:
        """A random secret kept in the collection (made on first use), e.g. the key a server
        signs its browsers' user ids with, so they survive a restart (a search node's last as long as it runs)."""
        if self.read_only:
            return self.collection.secret(name)  # type: ignore[attr-defined]
        return collection_secret(self.collection.database, name)

    def roots(self) -> list[Root]:
        """The folders and files the collection was asked to index (real paths)."""
        return self.collection.roots.all()

    def relative_uri(self, uri: str, roots: Sequence[Root] | None = None) -> str:
        """``uri`` shown from the root it lies in (``Pictures/2024/cat.jpg``): what a client that
        may not see the server's folders is told. A uri under no root keeps only its name."""
        shown = [r for r in (roots if roots is not None else self.roots()) if r.relative(uri) is not None]
        if not shown:
            return uri.rsplit("/", 1)[-1]
        return max(shown, key=lambda r: len(r.path)).relative(uri) or ""
