"""An engine's model and query planner, each loaded on first use, and the torch-free text path.

Importing torch and open_clip takes seconds, most of a one-shot text search. So while the model
is not loaded, a query that embeds only text (or gives ready vectors), for a model whose text
tower runs without torch (`aligner.text_only`: the starter model's kind), is embedded by that
tower: the same vectors, checked against the collection's model the same way (other weights are
refused before anything is searched). This happens only when torch is not imported yet: once it
is, the model costs little more. Any other query loads the model, which then takes over the
planner and embeds every query. A server asks for the text path and loads the model behind it
(`ModelSlot.load` with ``wait=False``).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from crossmodal.aligner.registry import load_aligner
from crossmodal.aligner.text_only import TextOnlyModel, text_only_model, torch_loaded
from crossmodal.core.models import check_collection_model
from crossmodal.search.planner import Planner
from crossmodal.search.query import Query
from crossmodal.settings import Settings
from crossmodal.storage.collection import Collection

if TYPE_CHECKING:  # torch loads with the model, not with the core
    from crossmodal.aligner.model import Aligner

LOG = logging.getLogger(__name__)


def text_only_query(query: Query) -> bool:
    """Whether embedding ``query`` needs nothing but a text tower."""
    return all(p.vector is not None or (p.modality == "text" and p.text is not None) for p in query.parts)


class ModelSlot:
    """The model of one collection (``ref``, default the collection's own), the torch-free text
    tower that may stand in for it, and the planner that uses whichever is there. Safe to share
    between threads: a text query never waits for the model to load."""

    def __init__(self, collection: Collection, settings: Settings, ref: str | None = None,
                 aligner: Aligner | None = None) -> None:
        self.collection = collection
        self.settings = settings
        self.ref = ref
        self._aligner = aligner
        self._text_model: TextOnlyModel | None = None
        self._text_tried = False
        self._planner: Planner | None = None
        self._lock = threading.Lock()  # held while the model loads (seconds)
        self._text_lock = threading.Lock()  # held while the text tower loads
        self._planner_lock = threading.Lock()  # never held for long

    @property
    def loaded(self) -> bool:
        return self._aligner is not None

    @property
    def aligner(self) -> Aligner:
        """The collection's model, loaded (and checked against the collection) on first use."""
        with self._lock:
            if self._aligner is None:
                ref = self.ref or self.collection.model.ref
                aligner = load_aligner(ref)
                check_collection_model(self.collection, aligner, ref)  # the weights behind a ref may change
                self._aligner = aligner
            return self._aligner

    @property
    def planner(self) -> Planner:
        """The query planner, with the loaded model."""
        aligner = self.aligner
        with self._planner_lock:
            if self._planner is None:
                self._planner = Planner(self.collection, aligner, self.settings)
            self._planner.aligner = aligner  # it takes over from the text tower
            return self._planner

    def text_only(self) -> TextOnlyModel | None:
        """The model's text tower run without torch, checked against the collection's model, when
        the model allows it and neither the model nor torch was loaded at the first call; else None."""
        with self._text_lock:
            if not self._text_tried and self._aligner is None and not torch_loaded():
                self._text_tried = True
                ref = self.ref or self.collection.model.ref
                model = text_only_model(ref)
                if model is not None:
                    check_collection_model(self.collection, model, ref)  # as the torch model is checked
                    LOG.debug("text queries of %s are embedded without torch", self.collection.name)
                self._text_model = model
            return self._text_model

    def some_model(self) -> Aligner | TextOnlyModel:
        """The loaded model, else the text tower, else the model loaded now: what describes the
        model (its config, modalities, id) at the least cost."""
        return self._aligner or self.text_only() or self.aligner

    @property
    def description(self) -> str | None:
        """The config's ``description`` of whichever model is in memory (None when none is: a
        health check must not load a model)."""
        model = self._aligner or self._text_model
        return (model.cfg.description or None) if model is not None else None

    def planner_for(self, query: Query) -> Planner:
        """The planner for ``query``: while the model is not loaded and ``query`` embeds only
        text, one with the text tower if the model allows it; else the loaded model's."""
        if self._aligner is None and text_only_query(query):
            model = self.text_only()
            if model is not None:
                return self._text_planner(model)
        return self.planner

    def _text_planner(self, model: TextOnlyModel) -> Planner:
        with self._planner_lock:
            if self._planner is None:
                self._planner = Planner(self.collection, model, self.settings)
            return self._planner  # one made with the model, or given it since, stays as it is

    def load(self, wait: bool = True) -> Planner:
        """The planner, its model loaded now; with ``wait=False``, where the text tower stands in
        for the model, that one now and the model in a background thread (a load that fails there
        is logged, and tried again by the next query that needs the model)."""
        light = None if wait else self.text_only()
        if light is None:
            return self.planner
        light.embed_texts(["warm"])  # the tokenizer's first call imports its cleaning libraries
        # Not a daemon: a process told to stop while the model loads waits for the load to end,
        # since a daemon thread still importing torch at interpreter exit aborts the process.
        threading.Thread(target=self._load_behind, name="crossmodal-model-load", daemon=False).start()
        return self._text_planner(light)

    def _load_behind(self) -> None:
        try:
            self.planner.text_encoder(prepare=True)  # and its query text tower, as `Engine.load` builds it
        except Exception:  # a thread has nobody to raise to
            LOG.exception("the model of collection %s did not load; the next query that needs it tries again",
                          self.collection.name)
