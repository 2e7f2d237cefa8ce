"""Is a published index the one its manifest entry describes, and what did a killed run leave?

Opening an index checks the facts that cost next to nothing: its backend's cheap test (for a
FAISS file: present, and the size recorded when it was written), then, once loaded, its count
and dimension against the entry and a few of its ids against the catalog, which must hold them
as vectors of the kinds the index is for. That last test catches two index files swapped even
when their sizes agree. The full tests (every id, the file's SHA-256) are `crossmodal check`'s.

Leftovers are files no published state uses: temporary files of an interrupted write, index
generations the manifest does not name, filter digests of another Milvus collection prefix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from crossmodal.errors import IndexInputError, StorageError
from crossmodal.storage.backends.base import VectorIndex
from crossmodal.storage.catalog import Catalog
from crossmodal.storage.damage import kinds_of
from crossmodal.storage.manifest import backend_spec

SAMPLE = 16
"""Stored ids whose kinds are looked up in the catalog when an index is opened."""
_TEMP = re.compile(r"^\.(manifest\.json|.+\.faiss|milvus-.+\.npz|collaborative\.npz)\..+\.tmp(\.npz)?$")


def loaded_fault(name: str, index: VectorIndex, entry: dict[str, Any], kinds: tuple[str, ...], dim: int,
                 catalog: Catalog | None, exact_count: bool, stale: bool) -> str | None:
    """What is wrong with a freshly opened index, judged from cheap facts; None when nothing is.

    ``exact_count``: the backend's published indexes never change, so the count must be the
    entry's. ``stale``: the catalog has moved on since the index was published, so ids it no
    longer holds are expected. Without a ``catalog`` (a damaged one) the ids are not looked up."""
    try:
        count = index.count()
        if exact_count and count != int(entry.get("ntotal", count)):
            return f"it holds {count} vectors, but its manifest entry says {entry['ntotal']}"
        if index.dim != dim:
            return f"its vectors have {index.dim} dimensions, but the collection's model makes {dim}"
        if catalog is None:
            return None
        sample = index.sample_ids(SAMPLE)
    except (IndexInputError, StorageError) as exc:
        return str(exc)
    found = kinds_of(catalog.db, sample.tolist())
    wrong = sorted({kind for kind in found.values() if kind not in kinds})
    if wrong:
        return (f"it holds {', '.join(wrong)} vectors, but the {name} index is for {', '.join(kinds)} vectors "
                f"(index files swapped, or copied from another collection?)")
    if not stale and len(found) < len(sample):
        return f"it holds ids the catalog does not have ({len(sample) - len(found)} of {len(sample)} looked up)"
    return None


def leftover_files(folder: Path, manifest: dict[str, Any]) -> list[str]:
    """Names of the files in ``folder`` that no published state uses and that are not the backend's
    own to find (`IndexBackend.strays` finds unnamed index generations of the current backend)."""
    spec = backend_spec(manifest)
    digest = f"milvus-{spec.get('prefix')}.npz" if spec["name"] == "milvus" else None
    out = []
    try:
        names = [p.name for p in folder.iterdir() if p.is_file()]
    except OSError:
        return []
    for name in names:
        temp = _TEMP.match(name) is not None
        old_digest = name.startswith("milvus-") and name.endswith(".npz") and name != digest
        other_backend = name.endswith(".faiss") and spec["name"] != "faiss"
        if temp or old_digest or other_backend:
            out.append(name)
    return sorted(out)
