"""The checks a collection runs on itself: are its published indexes the ones its manifest
describes, what did killed runs leave behind, and what a health check should report.

`Collection` takes these methods from `CollectionChecks`; they read the collection's manifest,
catalog and backend, and the index faults it remembers (`_faults`: what opening each index
found). The checks themselves are in `index_checks.py`; `crossmodal check` (in the core) runs
the full ones.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal.errors import CatalogError, CollectionError, IndexFileError
from crossmodal.storage.backends.base import IndexBackend, VectorIndex
from crossmodal.storage.catalog import Catalog
from crossmodal.storage.database import Database, collection_option
from crossmodal.storage.index_checks import leftover_files, loaded_fault
from crossmodal.storage.manifest import MANIFEST
from crossmodal.storage.schema import open_database

log = logging.getLogger(__name__)

CATALOG = "catalog.sqlite"
INDEX_KINDS: dict[str, tuple[str, ...]] = {
    "text": ("text",),
    "image": ("image",),
    "audio": ("audio",),
    "joint": ("text", "image", "audio", "fused"),
}
"""The indexes of a collection, and the vector kinds each holds."""


class CollectionChecks:
    """Integrity checks over a collection's own state (mixed into `Collection`)."""

    folder: Path
    manifest: dict[str, Any]
    database: Database
    catalog: Catalog
    _faults: dict[str, str]

    @property
    def backend(self) -> IndexBackend:
        raise NotImplementedError

    @property
    def stale(self) -> bool:
        raise NotImplementedError

    def _checked_open(self, backend: IndexBackend, manifest: dict[str, Any], name: str, entry: dict[str, Any],
                      stale: bool | None = None) -> tuple[VectorIndex | None, str | None]:
        """(the published index, None), or (None, what is wrong with it): its entry's cheap facts,
        then, once loaded, its count, dimension and a sample of its ids' kinds (see `index_checks.py`)."""
        fault = backend.entry_fault(name, entry)
        if fault is not None:
            return None, fault
        try:
            index = backend.open(name, entry)
        except IndexFileError as exc:
            return None, exc.reason
        if stale is None:
            stale = manifest.get("catalog_generation") != self.catalog.generation
        fault = loaded_fault(name, index, entry, INDEX_KINDS.get(name, ()), int(manifest["model"]["embed_dim"]),
                             self.catalog, backend.counts_are_final, stale)
        return (index, None) if fault is None else (None, fault)

    def index_faults(self, full: bool = False) -> dict[str, str]:
        """What is wrong with each published index, by name (absent when nothing is). Cheap facts
        only (a stat per file, and what opening it found), or with ``full`` what a full read of
        each file shows (its SHA-256; an index with none recorded is opened and checked)."""
        faults: dict[str, str] = {}
        stale = self.stale
        for name, entry in self.manifest["indexes"].items():
            fault = (self.backend.content_fault(name, entry) if full else self.backend.entry_fault(name, entry)) \
                or self._faults.get(name)
            if fault is None and full and not entry.get("sha256"):
                index, fault = self._checked_open(self.backend, self.manifest, name, entry, stale)
            if fault is not None:
                faults[name] = fault
        return faults

    def leftovers(self) -> list[str]:
        """What killed runs left behind: temporary files, index generations (or Milvus collections)
        no manifest names, filter digests of another Milvus prefix."""
        return leftover_files(self.folder, self.manifest) + self.backend.strays(self.manifest["indexes"])

    def remove_leftovers(self) -> list[str]:
        """Delete `leftovers` (the caller holds the writer lock, so no run of its own is under way)."""
        gone = []
        for name in leftover_files(self.folder, self.manifest):
            try:
                (self.folder / name).unlink(missing_ok=True)
                gone.append(name)
            except OSError as exc:
                log.warning("cannot delete %s, left by an interrupted run: %s", self.folder / name, exc)
        strays = self.backend.strays(self.manifest["indexes"])
        if strays:
            self.backend.discard(self.manifest["indexes"])
        if gone or strays:
            log.info("deleted %d leftover(s) of interrupted runs in %s", len(gone) + len(strays), self.folder)
        return gone + strays

    def health(self) -> list[str]:
        """What the cheap checks find wrong, one line each (for a server's health check): damage
        this process met (catalog errors, damaged vectors, indexes refused), files missing or of
        the wrong size, and a few stored vectors read back and checked."""
        findings = [] if self.database.damage is None else [self.database.damage]
        for name in (MANIFEST, CATALOG):
            if not (self.folder / name).is_file():
                findings.append(f"{self.folder / name}: the file is missing")
        for name, fault in self.index_faults().items():
            findings.append(f"{self.backend.describe(name, self.manifest['indexes'][name])}: {fault}")
        try:
            top = self.catalog.max_vector_id()
            if top:
                self.catalog.vectors_by_id(np.random.default_rng().integers(1, top + 1, size=16).tolist())
        except CatalogError as exc:
            if str(exc) not in findings:
                findings.append(str(exc))
        if self.catalog.damage_log.seen:
            findings.append(f"{self.catalog.path}: {self.catalog.damage_log.seen} stored vector(s) are damaged and "
                            f"left out of results; run `crossmodal check --repair {collection_option(self.folder)}`")
        return findings


def refuse_orphan_catalog(folder: Path) -> None:
    """A catalog with content but no manifest (deleted or lost) is not started over: its items and
    its users' feedback would be silently mixed with, or lost to, a new collection."""
    path = folder / CATALOG
    if not path.is_file() or not path.stat().st_size:
        return
    database = open_database(path, create=False)
    try:
        items = database.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        events = database.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]
    finally:
        database.close()
    if items or events:
        raise CollectionError(
            f"{folder} holds a catalog ({items} items, {events} feedback events) but no {MANIFEST}; crossmodal will "
            f"not start a new collection over it. Restore {MANIFEST} from a backup, or start over with `crossmodal "
            f"index PATH... {collection_option(folder)} --rebuild` (which deletes the catalog and its feedback)")
