"""The layout of one entity (one vector) in a crossmodal Milvus collection.

Filter fields (item id, modality, first uri and uri count, file time, metadata as text) are
columns a filter expression reads. ``details`` is a JSON object with the rest a search result
shows and an exact filter check needs, so a search node can do without the catalog: the vector's
kind, its segment's span and text, the item's metadata as stored, and every uri of the item.
Milvus caps a JSON value; a text too long is cut (it is only shown) and uris beyond the budget
are left out with ``uris_complete`` false (a search node then lets the item through a uri glob
that its first uri does not match, as the expression does: more, never less).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pymilvus import DataType, MilvusClient

from crossmodal.storage.catalog import VectorHit

FIELDS = 2
"""The entity layout's version, recorded in each manifest entry (1: no ``details``)."""
URI_MAX_BYTES = 65_535
TEXT_MAX_CHARS = 8_000
DETAILS_MAX_BYTES = 60_000
"""Under Milvus's 64 KiB limit for a JSON value."""


def entity_schema(dim: int) -> Any:
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("item_id", DataType.INT64)
    schema.add_field("modality", DataType.VARCHAR, max_length=16)
    schema.add_field("uri", DataType.VARCHAR, max_length=URI_MAX_BYTES)
    schema.add_field("n_uris", DataType.INT64)
    schema.add_field("mtime", DataType.DOUBLE)
    schema.add_field("meta", DataType.JSON)
    schema.add_field("details", DataType.JSON)
    return schema


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def details(hit: VectorHit, uris: Sequence[str]) -> dict[str, Any]:
    """The ``details`` of the vector ``hit`` stands for, within DETAILS_MAX_BYTES."""
    text = hit.text if hit.text is None or len(hit.text) <= TEXT_MAX_CHARS else hit.text[:TEXT_MAX_CHARS]
    out: dict[str, Any] = {"kind": hit.kind, "start": hit.start, "end": hit.end, "text": text,
                           "item_meta": hit.meta, "uris": [], "uris_complete": True}
    if _size(out) > DETAILS_MAX_BYTES // 2:
        out["item_meta"] = None
    budget = DETAILS_MAX_BYTES - _size(out)
    for uri in uris:
        cost = _size(uri) + 1
        if cost > budget:
            out["uris_complete"] = False
            break
        out["uris"].append(uri)
        budget -= cost
    return out
