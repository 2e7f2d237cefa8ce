"""crossmodal: cross-modal semantic search over text, images and audio.

The Python API is the `Engine` (one per collection) and the query values it takes:

    from crossmodal import Engine, query_from_fields

    with Engine.open("mine", create=True) as engine:
        engine.index(["photos/"])
        for hit in engine.search(query_from_fields({"text": "a handwritten four", "k": 5})).results:
            print(hit.score, hit.uri)

Names are imported on first use, so ``import crossmodal`` stays cheap (no torch, no FAISS).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Engine": "crossmodal.core", "Query": "crossmodal.core", "QueryPart": "crossmodal.core",
    "Filters": "crossmodal.core", "SearchResult": "crossmodal.core", "SearchResponse": "crossmodal.core",
    "IndexReport": "crossmodal.core", "query_from_fields": "crossmodal.core",
    "Settings": "crossmodal.settings", "load_settings": "crossmodal.settings",
    "CrossmodalError": "crossmodal.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'crossmodal' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
