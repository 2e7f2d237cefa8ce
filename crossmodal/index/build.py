"""`crossmodal index`: files on disk → catalog items and vectors → index files.

The run is incremental and crash-safe. A candidate whose files have the signature stored in
the catalog is skipped unread; one whose content hash is already stored is linked, not
embedded again; everything else is decoded and embedded in batches (in worker processes on a
CPU) and committed one batch per transaction. Index files are published last, so a killed run leaves
the previous collection readable, and the next run picks up after the last committed batch.
"""

from __future__ import annotations

import gc
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from crossmodal.aligner.model import Aligner
from crossmodal.aligner.registry import load_aligner
from crossmodal.catalog import Catalog, FileLink, FileState, NewItem
from crossmodal.errors import CrossmodalError
from crossmodal.index.backend import check_backend
from crossmodal.index.collection import (
    CATALOG,
    MANIFEST,
    Collection,
    CollectionError,
    ModelInfo,
    backend_spec,
    new_backend_spec,
)
from crossmodal.ingest.pipeline import Outcome, embed_stream, process_batch
from crossmodal.ingest.sources import PRIMARY_ORDER, Candidate, Skip, discover
from crossmodal.settings import IndexSettings, Settings


@dataclass
class IndexReport:
    """What one `index` run did."""

    collection: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    removed: int = 0
    skipped: list[Skip] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    indexes: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"collection": self.collection, "added": self.added, "updated": self.updated,
                "unchanged": self.unchanged, "duplicates": self.duplicates, "removed": self.removed,
                "skipped": [{"source": s.source, "reason": s.reason} for s in self.skipped],
                "counts": self.counts, "indexes": self.indexes}


def model_info(aligner: Aligner, ref: str) -> ModelInfo:
    """The model a collection records: a checkpoint folder is kept as an absolute path."""
    sha = (aligner.checkpoint_config or {}).get("weights", {}).get("sha256")
    if Path(ref).exists():
        ref = str(Path(ref).resolve())
    return ModelInfo(aligner.model_id, sha, ref, aligner.embed_dim)


def open_for_writing(folder: Path, model_ref: str | None, rebuild: bool = False,
                     aligner: Aligner | None = None,
                     index_settings: IndexSettings | None = None) -> tuple[Collection, Aligner]:
    """Open (or create) a collection and its model, refusing a model it was not built with, and
    a backend other than its own (`crossmodal migrate` moves a collection between backends)."""
    index_settings = index_settings or IndexSettings()
    token = index_settings.milvus_token or None
    exists = (folder / MANIFEST).is_file()
    if exists and rebuild:
        _clear(folder, token)
        exists = False
    if exists:
        coll = Collection.open(folder, milvus_token=token)
        try:
            _check_backend(coll, index_settings)
            ref = model_ref or coll.model.ref
            aligner = aligner or load_aligner(ref)
            coll.check_model(model_info(aligner, ref))
        except CrossmodalError:
            coll.close()
            raise
        return coll, aligner
    spec = new_backend_spec(index_settings.backend or "faiss", folder.name, index_settings.milvus_uri)
    ref = model_ref or "starter"
    aligner = aligner or load_aligner(ref)
    return Collection.create(folder, model_info(aligner, ref), spec, token), aligner


def _check_backend(coll: Collection, settings: IndexSettings) -> None:
    """Refuse to index into a collection with another backend (or Milvus server) than the one asked for."""
    mine = backend_spec(coll.manifest)
    asked = check_backend(settings.backend) if settings.backend else "milvus" if settings.milvus_uri else ""
    if asked and asked != mine["name"]:
        raise CollectionError(
            f"collection {coll.name!r} keeps its indexes in {mine['name']}, not {asked}; move it with "
            f"`crossmodal migrate --index {coll.name} --to {asked}`, or drop --backend to use its own")
    if settings.milvus_uri and mine["name"] == "milvus":
        wanted = new_backend_spec("milvus", coll.name, settings.milvus_uri)["uri"]
        if wanted != mine.get("uri"):
            raise CollectionError(
                f"collection {coll.name!r} keeps its indexes in Milvus at {mine.get('uri')}, not {wanted}; move "
                f"them with `crossmodal migrate --index {coll.name} --to milvus --milvus-uri URI`")


def _clear(folder: Path, token: str | None = None) -> None:
    """Delete a collection's indexes (in its backend), manifest and catalog."""
    try:
        old = Collection.open(folder, milvus_token=token)
    except CrossmodalError:
        old = None  # a damaged manifest or catalog: only files are left to delete
    if old is not None:
        with old:
            old.drop_indexes()
    for path in [folder / MANIFEST, *folder.glob("*.faiss"), *folder.glob(CATALOG + "*")]:
        path.unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        shutil.rmtree(folder)


@dataclass(frozen=True)
class _Pending:
    """What the first pass learnt of a candidate that has to be read: its catalog state and
    its files' state on disk before reading them."""

    state: FileState | None
    signature: str
    size: int | None
    mtime_ns: int | None


def _store_batch(catalog: Catalog, outcomes: Sequence[tuple[Outcome, int | None]], pending: dict[str, _Pending],
                 added: set[str], report: IndexReport) -> None:
    """Link each candidate's uri to its item, adding the items whose content is new, all in
    one go (inside the batch's transaction).

    The signatures are the ones taken before the files were read, so a file that changes while
    it is being indexed is read again next time. A content the worker found new can only have
    been stored since by this run (``added``), so only then is the catalog asked; a content the
    worker found stored comes with its item id, already looked up."""
    new_items: list[NewItem] = []
    new_index: dict[str, int] = {}
    plans: list[tuple[Outcome, int | None, int | None]] = []  # (outcome, stored item id, new item index)
    for outcome, stored_id in outcomes:
        state, content_hash = pending[outcome.cand.uri].state, outcome.content_hash
        assert content_hash is not None
        item_id, is_new = None, False
        if content_hash not in new_index:
            item_id = stored_id if outcome.item is None else \
                catalog.item_for_hash(content_hash) if content_hash in added else None
            if item_id is None:
                assert isinstance(outcome.item, NewItem)
                new_index[content_hash], is_new = len(new_items), True
                new_items.append(outcome.item)
        plans.append((outcome, item_id, new_index.get(content_hash) if item_id is None else None))
        if state is not None and state.item_id == item_id:
            report.unchanged += 1
        elif state is not None:
            report.updated += 1
        elif is_new:
            report.added += 1
        else:
            report.duplicates += 1
    new_ids = catalog.add_items(new_items)
    added.update(new_index)
    links = []
    for outcome, item_id, new_at in plans:
        p = pending[outcome.cand.uri]
        target = new_ids[new_at] if new_at is not None else item_id
        assert target is not None
        links.append(FileLink(FileState(outcome.cand.uri, target, p.size, p.mtime_ns, p.signature, outcome.cand.source),
                              p.state))
    catalog.link_files(links)


def _prune(catalog: Catalog, seen: set[str], manifests: set[str]) -> int:
    """Forget uris whose files are gone, and manifest lines a re-read manifest no longer has."""
    removed = 0
    for uri in catalog.file_states():
        if uri in seen:
            continue
        path, _, line = uri.partition("#L")
        gone = not Path(path).exists() or (line and path in manifests)
        if gone and catalog.unlink_file(uri):
            removed += 1
    return removed


@contextmanager
def _long_lived_objects_frozen() -> Iterator[None]:
    """Keep the garbage collector off the objects that exist before the run (the model, the
    imported libraries: hundreds of thousands of them). Otherwise every full collection
    rescans them all, and in forked workers that scan also copies the pages it touches."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def index_paths(folder: Path, paths: Sequence[str | Path], settings: Settings, model_ref: str | None = None,
                prune: bool = False, rebuild: bool = False, progress: bool = True,
                aligner: Aligner | None = None,
                on_batch: Callable[[int], None] | None = None) -> IndexReport:
    """Index ``paths`` into the collection at ``folder`` and publish its index files."""
    with _long_lived_objects_frozen():
        return _index_paths(folder, paths, settings, model_ref, prune, rebuild, progress, aligner, on_batch)


def _index_paths(folder: Path, paths: Sequence[str | Path], settings: Settings, model_ref: str | None,
                 prune: bool, rebuild: bool, progress: bool, aligner: Aligner | None,
                 on_batch: Callable[[int], None] | None) -> IndexReport:
    folder.mkdir(parents=True, exist_ok=True)
    coll, aligner = open_for_writing(folder, model_ref, rebuild, aligner, settings.index)
    report = IndexReport(collection=coll.name)
    with coll, coll.writer_lock():
        coll.backend.ready()
        catalog = coll.catalog
        cands, report.skipped = discover(paths)
        todo: list[Candidate] = []
        pending: dict[str, _Pending] = {}
        catalogued = catalog.has_files()  # a first build need not look each file up
        for cand in cands:
            state = catalog.file_state(cand.uri) if catalogued else None
            try:
                signature, size, mtime_ns = cand.disk_state()
            except OSError as exc:
                report.skipped.append(Skip(cand.uri, f"cannot read ({exc.strerror or exc})"))
                continue
            if state is not None and state.signature == signature:
                report.unchanged += 1
            else:
                todo.append(cand)
                pending[cand.uri] = _Pending(state, signature, size, mtime_ns)
        todo.sort(key=lambda c: PRIMARY_ORDER.index(c.modality))  # one modality per model call where possible
        bar = tqdm(total=len(todo), unit="item", desc=f"indexing {coll.name}", disable=not progress)
        weights = settings.index.fusion_weights
        added: set[str] = set()
        stream = embed_stream(todo, aligner, settings.ingest, weights, str(catalog.path), catalog.stored_hashes)
        for outcomes in stream:
            with catalog.transaction():
                ready = []
                for outcome in outcomes:
                    stored_id = catalog.item_for_hash(outcome.content_hash) if outcome.item is None else None
                    if outcome.item is None and stored_id is None:
                        # Known when it was checked, but the item was dropped since (its last
                        # file changed earlier in this run): embed it after all.
                        outcome = process_batch([outcome.cand], aligner, settings.ingest, weights, lambda _: set())[0]
                    if isinstance(outcome.item, Skip):
                        report.skipped.append(outcome.item)
                    else:
                        ready.append((outcome, stored_id))
                _store_batch(catalog, ready, pending, added, report)
            bar.update(len(outcomes))
            if on_batch is not None:
                on_batch(len(outcomes))
        bar.close()
        if prune:
            seen = {c.uri for c in cands}
            manifests = {c.source for c in cands if c.source.endswith(".jsonl")}
            with catalog.transaction():
                report.removed = _prune(catalog, seen, manifests)
        coll.sync_indexes(settings.index)
        report.counts = coll.manifest["counts"]
        report.indexes = coll.manifest["indexes"]
    return report


def remove_items(folder: Path, item_ids: Sequence[int], uris: Sequence[str], settings: Settings) -> tuple[int, list]:
    """Remove items by id and uris explicitly; returns (removed count, ids or uris not found)."""
    missing: list = []
    removed = 0
    with Collection.open(folder, milvus_token=settings.index.milvus_token or None) as coll, coll.writer_lock():
        with coll.catalog.transaction():
            for item_id in item_ids:
                if coll.catalog.has_item(item_id):
                    coll.catalog.remove_item(item_id)
                    removed += 1
                else:
                    missing.append(item_id)
            for uri in uris:
                key = uri if coll.catalog.file_state(uri) is not None else str(Path(uri).expanduser().resolve())
                if coll.catalog.unlink_file(key):
                    removed += 1
                else:
                    missing.append(uri)
        coll.sync_indexes(settings.index)
    return removed, missing
