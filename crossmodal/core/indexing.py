"""Indexing runs: files on disk → catalog items and vectors → published indexes.

The run is incremental and crash-safe. A candidate whose files have the signature stored in
the catalog is skipped unread; one whose content hash is already stored is linked, not
embedded again; everything else is decoded and embedded in batches (in worker processes on a
CPU) and committed one batch per transaction. Indexes are published last, so a killed run
leaves the previous collection readable, and the next run picks up after the last committed
batch. Ingest and storage do not know each other: this module hands ingest a lookup of stored
contents and hands storage the embedded items.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from crossmodal.aligner.registry import canonical_ref, missing_tower_reason
from crossmodal.errors import CollectionError
from crossmodal.ingest.confine import Confinement
from crossmodal.ingest.discover import PRIMARY_ORDER, Candidate, discover
from crossmodal.ingest.embed import Outcome, process_batch
from crossmodal.ingest.ray_executor import embed_stream  # the local pool, or Ray workers ([ingest] executor)
from crossmodal.items import NewItem, Skip
from crossmodal.settings import IndexSettings, Settings
from crossmodal.storage.backends.base import check_backend
from crossmodal.storage.catalog import Catalog, FileLink, FileState
from crossmodal.storage.collection import Collection
from crossmodal.storage.manifest import ModelInfo, backend_spec, new_backend_spec

if TYPE_CHECKING:  # torch loads with the model, not with the core
    from crossmodal.aligner.model import Aligner
    from crossmodal.aligner.text_only import TextOnlyModel


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


def model_info(aligner: Aligner | TextOnlyModel, ref: str) -> ModelInfo:
    """The model a collection records, tied to its exact weights: a checkpoint's SHA-256, or for
    pretrained weights used as they are, the weights file's SHA-256 or the open_clip tag (see
    `registry.pretrained_identity`). Local files and folders are kept as absolute paths."""
    sha = (aligner.checkpoint_config or {}).get("weights", {}).get("sha256") or aligner.weights_sha256
    return ModelInfo(aligner.model_id, sha, canonical_ref(ref), aligner.embed_dim, aligner.weights_source)


def check_backend_request(coll: Collection, settings: IndexSettings) -> None:
    """Refuse to index into a collection with another backend (or Milvus server) than the one asked for."""
    mine = backend_spec(coll.manifest)
    asked = check_backend(settings.backend) if settings.backend else "milvus" if settings.milvus_uri else ""
    if asked and asked != mine["name"]:
        raise CollectionError(
            f"collection {coll.name!r} keeps its indexes in {mine['name']}, not {asked}; move it with "
            f"`crossmodal migrate --collection {coll.name} --to {asked}`, or drop --backend to use its own")
    if settings.milvus_uri and mine["name"] == "milvus":
        wanted = new_backend_spec("milvus", coll.name, settings.milvus_uri)["uri"]
        if wanted != mine.get("uri"):
            raise CollectionError(
                f"collection {coll.name!r} keeps its indexes in Milvus at {mine.get('uri')}, not {wanted}; move "
                f"them with `crossmodal migrate --collection {coll.name} --to milvus --milvus-uri URI`")


@dataclass(frozen=True)
class _Pending:
    """What the first pass learnt of a candidate that has to be read: its catalog state and
    its files' state on disk before reading them."""

    state: FileState | None
    signature: str
    size: int | None
    mtime_ns: int | None


def _store_batch(catalog: Catalog, outcomes: Sequence[Outcome], stored: dict[str, int],
                 pending: dict[str, _Pending], report: IndexReport) -> None:
    """Link each candidate's uri to its item, adding the items whose content is new, all in
    one go (inside the batch's transaction).

    ``stored`` maps the batch's content hashes to the items the catalog holds for them (read
    in this transaction): the one place that decides whether a content is new. The signatures
    are the ones taken before the files were read, so a file that changes while it is being
    indexed is read again next time."""
    new_items: list[NewItem] = []
    new_index: dict[str, int] = {}
    plans: list[tuple[Outcome, int | None, int | None]] = []  # (outcome, stored item id, new item index)
    for outcome in outcomes:
        state, content_hash = pending[outcome.cand.uri].state, outcome.content_hash
        assert content_hash is not None
        item_id, is_new = stored.get(content_hash), False
        if item_id is None and content_hash not in new_index:
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
    links = []
    for outcome, item_id, new_at in plans:
        p = pending[outcome.cand.uri]
        target = new_ids[new_at] if new_at is not None else item_id
        assert target is not None
        links.append(FileLink(FileState(outcome.cand.uri, target, p.size, p.mtime_ns, p.signature, outcome.cand.source),
                              p.state))
    catalog.link_files(links)


def _prune(catalog: Catalog, seen: set[str], item_lists: set[str]) -> int:
    """Forget uris whose files are gone, and lines a re-read item list no longer has."""
    removed = 0
    for uri in catalog.file_states():
        if uri in seen:
            continue
        path, _, line = uri.partition("#L")
        gone = not Path(path).exists() or (line and path in item_lists)
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


def _with_towers(cands: Sequence[Candidate], aligner: Aligner, report: IndexReport) -> list[Candidate]:
    """The candidates the model can embed; the others (a sound when it has no audio tower) are
    skipped unread, each with the one reason that says how to get a model that can."""
    kept = []
    for cand in cands:
        missing = [m for m in cand.modalities if m not in aligner.modalities]
        if missing:
            report.skipped.append(Skip(cand.uri, missing_tower_reason(aligner, missing[0])))
        else:
            kept.append(cand)
    return kept


def _plan(catalog: Catalog, cands: Sequence[Candidate], report: IndexReport) -> tuple[list[Candidate],
                                                                                      dict[str, _Pending]]:
    """The candidates that must be read (new or changed on disk), in model-friendly order."""
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
    return todo, pending


def index_paths(coll: Collection, aligner: Aligner, paths: Sequence[str | Path], settings: Settings,
                prune: bool = False, progress: bool = True, on_batch: Callable[[int], None] | None = None,
                follow_symlinks: bool = False) -> IndexReport:
    """Index ``paths`` into ``coll`` (whose writer lock the caller holds) and publish its indexes.
    The paths become roots of the collection; links are followed only into roots, unless
    ``follow_symlinks`` (each target then becomes a root)."""
    with _long_lived_objects_frozen():
        report = IndexReport(collection=coll.name)
        coll.backend.ready()
        catalog = coll.catalog
        confinement = Confinement(coll.roots.all(), follow_symlinks)
        cands, report.skipped = discover(paths, confinement)
        coll.roots.add(confinement.new_roots)
        todo, pending = _plan(catalog, _with_towers(cands, aligner, report), report)
        bar = tqdm(total=len(todo), unit="item", desc=f"indexing {coll.name}", disable=not progress)
        weights = settings.index.fusion_weights
        # made before the workers fork, so that they share it; an int8 image tower only if images are to embed
        from crossmodal.aligner.index_encoder import IndexEncoder, check_image_mode

        check_image_mode(settings.ingest.image_tower)
        images = any("image" in c.modalities for c in todo)
        encoder = IndexEncoder(aligner, settings.ingest.image_tower if images else "fp32")
        for outcomes in embed_stream(todo, encoder, settings.ingest, weights, catalog.content_lookup()):
            with catalog.transaction():
                stored = catalog.items_for_hashes([o.content_hash for o in outcomes if o.content_hash])
                ready = []
                for outcome in outcomes:
                    if outcome.item is None and outcome.content_hash not in stored:
                        # Stored when the worker looked, but dropped since (its last file changed
                        # earlier in this run): embed it after all.
                        outcome = process_batch([outcome.cand], encoder, settings.ingest, weights, lambda _: set())[0]
                    if isinstance(outcome.item, Skip):
                        report.skipped.append(outcome.item)
                    else:
                        ready.append(outcome)
                _store_batch(catalog, ready, stored, pending, report)
            bar.update(len(outcomes))
            if on_batch is not None:
                on_batch(len(outcomes))
        bar.close()
        if prune:
            seen = {c.uri for c in cands}
            item_lists = {c.source for c in cands if c.source.endswith(".jsonl")}
            with catalog.transaction():
                report.removed = _prune(catalog, seen, item_lists)
        coll.sync_indexes(settings.index)
        report.counts = coll.manifest["counts"]
        report.indexes = coll.manifest["indexes"]
    return report


def remove_items(coll: Collection, item_ids: Sequence[int], uris: Sequence[str],
                 settings: IndexSettings) -> tuple[int, list]:
    """Remove items by id and by uri (the caller holds the writer lock); returns (removed
    count, ids or uris not found)."""
    missing: list = []
    removed = 0
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
    coll.sync_indexes(settings)
    return removed, missing
