"""`crossmodal check`: verify everything a collection holds, and repair what can be rebuilt.

What is verified, and what ``repair`` does about each finding:

* the catalog: SQLite's ``PRAGMA integrity_check``. Not repairable here: the catalog is the only
  copy of the vectors and the feedback (restore a backup, or start over with ``--rebuild``);
* every stored vector against its checksum, length and norm. A vector is the model's output for
  a file, so nothing in the collection can rebuild it: repair records the item, so that the next
  `crossmodal index` of its files embeds them again (its id and feedback stay). The finding stays
  open until then;
* every index against the catalog: its file (present, size and SHA-256 as recorded), count,
  dimension, and its ids: all of the right kinds, none missing. Repair rebuilds it from the catalog;
* changes the catalog holds and the indexes do not (an interrupted run): repair publishes them;
* leftovers of killed runs (temporary files, unnamed index generations, stale digests): repair
  deletes them.

The caller (`Engine.check`) holds the writer lock while repairing. Findings repair fixed are
checked again after the repair, so "repaired" means the check now passes.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal.errors import StorageError
from crossmodal.settings import IndexSettings
from crossmodal.storage import damage
from crossmodal.storage.collection import INDEX_KINDS, Collection
from crossmodal.storage.database import collection_option
from crossmodal.storage.index_checks import loaded_fault
from crossmodal.storage.locks import writer_active

log = logging.getLogger(__name__)


@dataclass
class Finding:
    """One thing wrong: where (``area``: catalog, vectors, index, stale, leftover), what is at fault
    (``subject``: a file, index or item), the problem, and what to do about it (once repaired:
    what was done)."""

    area: str
    subject: str
    problem: str
    fix: str
    repaired: bool = False

    def line(self) -> str:
        state = "repaired" if self.repaired else "to do"
        return f"{self.area:<8} {self.subject}: {self.problem}; {state}: {self.fix}"


@dataclass
class CheckReport:
    """What `check_collection` found (and repaired), and how much it looked at."""

    collection: str
    folder: str
    repair: bool
    findings: list[Finding] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """Nothing is left to do (nothing was wrong, or repair fixed all of it)."""
        return all(f.repaired for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {"collection": self.collection, "folder": self.folder, "repair": self.repair,
                "healthy": self.healthy, "checked": self.checked, "findings": [asdict(f) for f in self.findings],
                "notes": self.notes}


def check_collection(coll: Collection, settings: IndexSettings, repair: bool = False) -> CheckReport:
    """Verify ``coll`` and, with ``repair``, fix what can be rebuilt (the caller holds the writer lock)."""
    report = CheckReport(coll.name, str(coll.folder), repair)
    option = collection_option(coll.folder)
    catalog_sound = _check_catalog(coll, report, option)
    item_findings: dict[int, tuple[Finding, list[str]]] = {}
    damaged = _check_vectors(coll, report, option, item_findings)
    writing = not repair and writer_active(coll.folder)
    if writing:
        report.notes.append("another process is writing the collection: its temporary files are not leftovers, "
                            "so none are listed; check again when it is done")
    leftovers = {name: Finding("leftover", str(coll.folder / name) if (coll.folder / name).exists()
                               else f"Milvus collection {name}", "left behind by an interrupted run",
                               f"`crossmodal check --repair {option}` deletes it")
                 for name in ([] if writing else _safely(coll.leftovers, []))}
    report.findings += leftovers.values()
    index_findings = _check_indexes(coll, damaged, option, catalog_sound)
    report.findings += index_findings.values()
    if coll.stale:
        report.findings.append(Finding("stale", str(coll.folder), "the catalog holds changes its indexes do not "
                                       "(an interrupted run)", f"`crossmodal check --repair {option}` or the next "
                                       "`crossmodal index` publishes them"))
    report.checked["indexes"] = len(coll.manifest["indexes"])
    if repair:
        _repair(coll, settings, report, item_findings, leftovers, index_findings, catalog_sound, option)
    return report


def _safely(call, default):
    """``call()``, or ``default`` when storage fails (that failure is a finding of its own)."""
    try:
        return call()
    except StorageError as exc:
        log.debug("check: %s", exc)
        return default


def _check_catalog(coll: Collection, report: CheckReport, option: str) -> bool:
    try:
        rows = [r[0] for r in coll.catalog.db.execute("PRAGMA integrity_check(20)").fetchall()]
    except StorageError as exc:
        rows = [str(exc)]
    if rows == ["ok"]:
        return True
    report.findings.append(Finding(
        "catalog", str(coll.catalog.path), f"SQLite integrity check failed: {'; '.join(rows[:3])}",
        "cannot be repaired here: restore catalog.sqlite from a backup (export users' feedback first with "
        f"`crossmodal user --user NAME {option} --json` while it still reads), or start over with "
        f"`crossmodal index PATH... {option} --rebuild`"))
    return False


def _sources(coll: Collection, uris: list[str]) -> list[str]:
    """What an `index` run must be given to embed these uris again as they were indexed: the folder,
    item list or file each was found through (so labels, metadata and captions come back too)."""
    out = set()
    for uri in uris:
        state = coll.catalog.file_state(uri)
        out.add(state.source if state is not None and state.source else uri.partition("#L")[0])
    return sorted(out)


def _vector_fix(item_id: int, uris: list[str], sources: list[str], recorded: bool, option: str) -> str:
    if not uris or any(not Path(uri.partition("#L")[0]).exists() for uri in uris):
        return f"its file is gone; remove the item with `crossmodal remove --item {item_id} {option}`"
    step = "recorded for a new embedding: " if recorded else f"`crossmodal check --repair {option}`, then "
    return f"{step}`crossmodal index {' '.join(shlex.quote(s) for s in sources)} {option}` embeds it again"


def _check_vectors(coll: Collection, report: CheckReport, option: str,
                   finding_of: dict[int, tuple[Finding, list[str]]]) -> dict[int, int]:
    """Findings for damaged stored vectors (and items awaiting a new embedding), also kept in
    ``finding_of`` by item; returns the damaged vector ids, mapped to their items."""
    db = coll.catalog.db
    by_item: dict[int, list[damage.DamagedVector]] = {}
    vectors: dict[int, int] = {}
    try:
        for bad in damage.scan(db, coll.catalog.dim):
            by_item.setdefault(bad.item_id, []).append(bad)
            vectors[bad.vector_id] = bad.item_id
        pending = damage.recorded(db)
        report.checked["vectors"] = coll.catalog.vector_count()
    except StorageError as exc:
        report.findings.append(Finding("vectors", str(coll.catalog.path), f"could not be read through: {exc}",
                                       "see the catalog finding"))
        return vectors
    for item_id in sorted(set(by_item) | set(pending)):
        uris = (coll.catalog.item(item_id) or {"uris": []})["uris"]
        where = f"item {item_id} ({', '.join(uris) or 'no file'})"
        bad = by_item.get(item_id, [])
        if bad:
            reasons = sorted({b.reason for b in bad})
            problem = f"{len(bad)} stored vector(s) damaged ({', '.join(b.kind for b in bad)}: {'; '.join(reasons)})"
        else:
            problem = f"awaiting a new embedding ({pending[item_id]})"
        finding = Finding("vectors", where, problem, _vector_fix(item_id, uris, _sources(coll, uris),
                                                                item_id in pending, option))
        finding_of[item_id] = (finding, uris)
        report.findings.append(finding)
    return vectors


def _index_problems(coll: Collection, name: str, entry: dict[str, Any], damaged: dict[int, int],
                    compare: bool) -> list[str]:
    """Everything wrong with one published index, checked against the catalog id by id (unless
    not ``compare``: a damaged catalog would make a sound index look wrong)."""
    backend = coll.backend
    fault = _safely(lambda: backend.content_fault(name, entry), None)
    if fault is not None:
        return [fault]
    try:
        index = backend.open(name, entry)
    except StorageError as exc:
        return [getattr(exc, "reason", str(exc))]
    kinds = INDEX_KINDS[name]
    stale = coll.stale
    fault = loaded_fault(name, index, entry, kinds, coll.model.embed_dim, coll.catalog if compare else None,
                         backend.counts_are_final, stale)
    if fault is not None or not compare:
        return [] if fault is None else [fault]
    problems = []
    stored = index.stored_ids()
    if np.unique(stored).size != stored.size:
        problems.append(f"it holds {stored.size - np.unique(stored).size} duplicate ids")
    found = damage.kinds_of(coll.catalog.db, stored.tolist())
    wrong = sorted({k for k in found.values() if k not in kinds})
    if wrong:
        problems.append(f"it holds {', '.join(wrong)} vectors, but it is for {', '.join(kinds)} vectors")
    if not stale and len(found) < stored.size:
        problems.append(f"it holds {stored.size - len(found)} ids the catalog does not have")
    expected = coll.vector_ids(kinds)
    missing = np.setdiff1d(expected, stored)
    missing = missing[~np.isin(missing, np.fromiter(damaged, dtype=np.int64, count=len(damaged)))]
    if stale:
        missing = missing[missing <= int(coll.manifest.get("max_vector_id", 0))]
    if missing.size:
        problems.append(f"{missing.size} of the catalog's vectors are missing from it")
    if not entry.get("kinds") or not entry.get("dim") or (backend.name == "faiss" and not entry.get("sha256")):
        problems.append("its manifest entry records no kinds, dimension or checksum (written by an older "
                        "crossmodal), so its bytes cannot be verified")
    return problems


def _check_indexes(coll: Collection, damaged: dict[int, int], option: str, compare: bool = True) -> dict[str, Finding]:
    """A finding per index that is wrong or missing, by index name (``compare``: see `_index_problems`)."""
    out: dict[str, Finding] = {}
    entries = coll.manifest["indexes"]
    has_vectors = bool(_safely(coll.catalog.vector_count, 0))
    for name in INDEX_KINDS:
        entry = entries.get(name)
        if entry is None:
            if entries or has_vectors:
                out[name] = Finding("index", f"the {name} index", "not published",
                                    f"`crossmodal check --repair {option}` builds it from the catalog")
            continue
        problems = _safely(lambda n=name, e=entry: _index_problems(coll, n, e, damaged, compare),
                           ["cannot be checked"])
        if problems:
            out[name] = Finding("index", coll.backend.describe(name, entry), "; ".join(problems),
                                f"`crossmodal check --repair {option}` rebuilds it from the catalog")
    return out


def _repair(coll: Collection, settings: IndexSettings, report: CheckReport,
            items: dict[int, tuple[Finding, list[str]]], leftovers: dict[str, Finding],
            index_findings: dict[str, Finding], catalog_sound: bool, option: str) -> None:
    """Fix what can be fixed, then check the indexes again to say what was."""
    removed = set(_safely(coll.remove_leftovers, []))
    for name, f in leftovers.items():
        if name in removed:
            f.repaired, f.fix = True, "deleted"
    if not catalog_sound:
        for f in report.findings:
            if f.area in ("index", "stale", "vectors"):
                f.fix = "not repaired: the catalog they would be rebuilt from is damaged (see its finding)"
        return
    if items:
        try:
            with coll.catalog.transaction() as conn:
                damage.record(conn, {i: "its stored vectors failed their check" for i in items})
        except StorageError as exc:
            log.warning("could not record the damaged items: %s", exc)
        else:
            for item_id, (f, uris) in items.items():
                f.fix = _vector_fix(item_id, uris, _sources(coll, uris), True, option)
    stale = [f for f in report.findings if f.area == "stale"]
    if index_findings or stale:
        try:
            coll.sync_indexes(settings, rebuild=set(index_findings))
        except StorageError as exc:
            for f in [*index_findings.values(), *stale]:
                f.fix += f" (the repair failed: {exc})"
            return
        damaged = {v: i for i in items for v in coll.catalog.vectors_of_items([i])}
        after = _check_indexes(coll, damaged, option)
        for name, f in index_findings.items():
            if name not in after:
                f.repaired, f.fix = True, "rebuilt from the catalog"
        for f in stale:
            if not coll.stale:
                f.repaired, f.fix = True, "published"

