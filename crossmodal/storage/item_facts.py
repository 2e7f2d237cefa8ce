"""What telling copies apart needs of each item, read in a few queries: its modalities, its
metadata (where ingest keeps content fingerprints), its paths and its whole text.

A narrow helper beside `catalog.py`: `crossmodal.search.duplicates` asks it about a search's
candidates (one query per table per 500 items) or about every item of a collection.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from crossmodal.storage.catalog import Catalog


@dataclass
class ItemFacts:
    """One item's modalities, metadata, paths (sorted) and text (its chunks joined; None when
    it has no text)."""

    item_id: int
    modality: str
    modalities: tuple[str, ...]
    meta: dict
    uris: list[str] = field(default_factory=list)
    text: str | None = None


def _chunks(item_ids: Sequence[int] | None) -> list[tuple[str, list[int]]]:
    """(SQL condition, arguments) covering ``item_ids`` 500 at a time, or every item."""
    if item_ids is None:
        return [("1", [])]
    ids = sorted({int(i) for i in item_ids})
    return [(f"item_id IN ({','.join('?' * len(ids[s:s + 500]))})", ids[s:s + 500]) for s in range(0, len(ids), 500)]


def item_facts(catalog: Catalog, item_ids: Sequence[int] | None = None) -> dict[int, ItemFacts]:
    """The facts of the given items (absent ids are left out), or of every item."""
    db = catalog.db
    out: dict[int, ItemFacts] = {}
    for where, args in _chunks(item_ids):
        for item_id, modality, modalities, meta in db.execute(
                f"SELECT id, modality, modalities, meta FROM items WHERE {where.replace('item_id', 'id')}", args):
            out[int(item_id)] = ItemFacts(int(item_id), modality, tuple(modalities.split(",")), json.loads(meta))
        for item_id, uri in db.execute(f"SELECT item_id, uri FROM files WHERE {where} ORDER BY uri", args):
            if int(item_id) in out:
                out[int(item_id)].uris.append(uri)
        texts: dict[int, list[str]] = {}
        for item_id, text in db.execute(f"SELECT item_id, text FROM segments WHERE modality = 'text' AND {where} "
                                        "ORDER BY item_id, position", args):
            texts.setdefault(int(item_id), []).append(text or "")
        for item_id, parts in texts.items():
            if item_id in out:
                out[item_id].text = "\n".join(parts)
    return out
