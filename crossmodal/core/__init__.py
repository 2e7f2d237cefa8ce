"""The core API: one `Engine` per collection, and the values it takes and returns.

Front ends (CLI, HTTP server, demo) import from here and from the base modules only.
"""

from crossmodal.core.engine import Engine, RemoveReport, SearchResponse, set_model_threads, set_search_threads
from crossmodal.core.indexing import IndexReport
from crossmodal.core.item_media import ItemMedia
from crossmodal.core.recommending import Recommendation, RecommendResponse
from crossmodal.search.planner import Plan
from crossmodal.search.query import (
    MAX_USER_CHARS,
    QUERY_FIELDS,
    TARGETS,
    Query,
    QueryPart,
    SearchResult,
    parse_targets,
    query_from_fields,
)
from crossmodal.storage.collection import collection_folder
from crossmodal.storage.feedback import FEEDBACK_EVENTS
from crossmodal.storage.filters import Filters

__all__ = [
    "FEEDBACK_EVENTS", "MAX_USER_CHARS", "QUERY_FIELDS", "TARGETS", "Engine", "Filters", "IndexReport", "ItemMedia",
    "Plan", "Query", "QueryPart", "Recommendation", "RecommendResponse",
    "RemoveReport", "SearchResponse", "SearchResult", "collection_folder",
    "parse_targets", "query_from_fields", "set_model_threads", "set_search_threads",
]
