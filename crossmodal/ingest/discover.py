"""Finding what to index: walk folders and files, read JSONL item lists, pair sidecar captions.

Each thing found becomes a `Candidate`: one future catalog item, with the files or inline
text that make it and a signature of their on-disk state (so an unchanged candidate can be
skipped without reading it). Anything that cannot be indexed is reported as `Skip` and the
walk goes on. What may be read at all is decided by a `Confinement` (see `confine.py`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from crossmodal.errors import DecodeError, ItemListError
from crossmodal.ingest.confine import Confinement, inside_folder
from crossmodal.ingest.item_list import parse_item_list_line
from crossmodal.ingest.sniff import sniff_file
from crossmodal.items import Skip
from crossmodal.media import MODALITIES

LIST_SUFFIXES = frozenset({".jsonl"})
CAPTION_SUFFIX = ".txt"
PRIMARY_ORDER = ("image", "audio", "text")


@dataclass
class Candidate:
    """One item to be: media files by modality, text (a file or inline), metadata, provenance."""

    uri: str
    media: dict[str, Path] = field(default_factory=dict)
    text_path: Path | None = None
    text: str | None = None
    meta: dict = field(default_factory=dict)
    source: str = ""

    @property
    def modalities(self) -> tuple[str, ...]:
        present = set(self.media)
        if self.text_path is not None or self.text is not None:
            present.add("text")
        return tuple(m for m in PRIMARY_ORDER if m in present)

    @property
    def modality(self) -> str:
        """The primary modality: what the item *is* (an image with a caption is an image)."""
        for modality in PRIMARY_ORDER:
            if modality in self.media:
                return modality
        return self.modalities[0]

    @property
    def files(self) -> list[Path]:
        return [*self.media.values(), *([self.text_path] if self.text_path is not None else [])]

    def signature(self) -> str:
        """Size and mtime of every file, and a hash of inline text and metadata: if it is equal
        to the stored one, the item is unchanged and need not be read again."""
        return self.disk_state()[0]

    def disk_state(self) -> tuple[str, int | None, int | None]:
        """The signature, and the size and mtime of the primary file (None for inline text),
        from one stat of each file."""
        parts, size, mtime = [], None, None
        modality = self.modality
        primary = self.media.get(modality) if modality != "text" else self.text_path
        for path in self.files:
            st = path.stat()
            parts.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
            if path is primary:
                size, mtime = st.st_size, st.st_mtime_ns
        parts.append(_NOTHING_EXTRA if self.text is None and not self.meta else _extra_digest(self.text, self.meta))
        return "|".join(parts), size, mtime


def _extra_digest(text: str | None, meta: dict) -> str:
    extra = json.dumps({"text": text, "meta": meta}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(extra.encode("utf-8")).hexdigest()[:16]


_NOTHING_EXTRA = _extra_digest(None, {})


LINK_OUTSIDE = ("a symbolic link to a file outside the collection's folders (index the folder it points "
                "into, or pass --follow-symlinks)")


def _walk(root: str, confinement: Confinement, skipped: list[Skip]) -> Iterator[tuple[str, bool]]:
    """(path, is a regular file) for the files under a folder, in a stable order, skipping
    hidden files and folders, links to folders, and links to files outside the roots. Plain
    strings and the directory entry's own type keep the walk at one system call per folder for
    local files, not one per file."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return
    folders = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                folders.append(entry.path)
                continue
            if entry.is_symlink():
                if entry.is_dir():
                    continue  # links to folders are not followed
                if entry.is_file() and not confinement.admits_link(entry.path):
                    skipped.append(Skip(entry.path, LINK_OUTSIDE))
                    continue
            regular = entry.is_file()
        except OSError:
            regular = False
        yield entry.path, regular
    for folder in folders:
        yield from _walk(folder, confinement, skipped)


def _files_to_candidates(files: list[tuple[str, bool]], source: str, skipped: list[Skip]) -> list[Candidate]:
    """Sniff every (path, is regular) file; pair ``x.txt`` with a media file ``x.*`` as its caption."""
    kinds: dict[str, str] = {}
    for path, regular in files:
        stem, suffix = os.path.splitext(path)
        if suffix.lower() in LIST_SUFFIXES:
            continue
        if not regular:
            skipped.append(Skip(path, "not a regular file (a pipe, socket, device or broken link)"))
            continue
        try:
            kind = sniff_file(path)
        except DecodeError as exc:
            skipped.append(Skip(path, exc.reason))
            continue
        if kind is None:
            skipped.append(Skip(path, "unsupported file type (not a recognised image, audio or text format)"))
            continue
        kinds[path] = kind
    captions = {}
    for path, kind in kinds.items():
        stem, suffix = os.path.splitext(path)
        if kind == "text" and suffix.lower() == CAPTION_SUFFIX:
            captions[stem] = path
    used: set[str] = set()
    out: list[Candidate] = []
    for path, kind in kinds.items():
        if kind == "text":
            continue
        cand = Candidate(uri=path, media={kind: Path(path)}, source=source)
        caption = captions.get(os.path.splitext(path)[0])
        if caption is not None and caption not in used:
            cand.text_path = Path(caption)
            used.add(caption)
        out.append(cand)
    for path, kind in kinds.items():
        if kind == "text" and path not in used:
            out.append(Candidate(uri=path, text_path=Path(path), source=source))
    return out


def _list_candidates(item_list: Path, skipped: list[Skip], confinement: Confinement,
                     explicit: bool) -> list[Candidate]:
    """One candidate per line of an item list (a pair line becomes one multimodal item).

    A list met while walking a folder may only name files inside its own folder (so a list
    dropped into a photo folder cannot reach elsewhere); one given explicitly may name any
    file, and each one it names becomes a root of the collection."""
    out: list[Candidate] = []
    try:
        handle = item_list.open("rb")
    except OSError as exc:
        skipped.append(Skip(str(item_list), f"cannot open item list ({exc.strerror or exc})"))
        return out
    with handle:
        for number, raw_bytes in enumerate(handle, start=1):
            try:
                raw = raw_bytes.decode("utf-8-sig" if number == 1 else "utf-8")
                if not raw.strip():
                    continue
                items = parse_item_list_line(raw, item_list, number)
            except UnicodeDecodeError:
                skipped.append(Skip(f"{item_list}:{number}", "line is not UTF-8 text"))
                continue
            except ItemListError as exc:
                skipped.append(Skip(f"{item_list}:{number}", exc.reason))
                continue
            cand = Candidate(uri=f"{item_list}#L{number}", source=str(item_list))
            meta = dict(items[0].meta)
            for key in ("label", "group"):
                value = getattr(items[0], key)
                if value is not None and not (key == "group" and len(items) > 1 and value.startswith(str(item_list))):
                    meta[key] = value
            cand.meta = meta
            problem = None
            for it in items:
                if it.modality == "text":
                    cand.text = it.text
                    continue
                path = it.path.resolve() if it.path is not None else None
                if path is not None and not explicit and not inside_folder(path, item_list.parent):
                    problem = (f"{it.path}: outside the item list's folder (a list found in a folder may only name "
                               f"files under it; give the list itself on the command line to allow this)")
                    break
                if path is not None and path.exists() and not path.is_file():
                    problem = f"{path}: not a regular file"
                    break
                try:
                    kind = sniff_file(path) if path is not None else None
                except DecodeError as exc:
                    problem = f"{path}: {exc.reason}"
                    break
                if kind != it.modality:
                    found = kind or "not a recognised media file"
                    problem = f"{path}: listed as {it.modality} but its content is {found}"
                    break
                cand.media[it.modality] = path
            if problem is not None:
                skipped.append(Skip(f"{item_list}:{number}", problem))
                continue
            if len(cand.media) == 1 and cand.text is None:
                cand.uri = str(next(iter(cand.media.values())))
            if explicit:
                for media_path in cand.media.values():
                    confinement.add(media_path, is_folder=False)
            out.append(cand)
    return out


def discover(paths: Iterable[str | Path],
             confinement: Confinement | None = None) -> tuple[list[Candidate], list[Skip]]:
    """Everything indexable under ``paths`` (folders, files, ``.jsonl`` item lists), deduplicated by uri.

    Each given path becomes a root of ``confinement`` (its real path: a link given on the
    command line is followed), which decides which links met on the way are followed; it then
    holds the roots this run added. Files that an item list in the same folder names are taken
    from the list (with its labels and metadata), not a second time as plain files.
    """
    confinement = confinement if confinement is not None else Confinement()
    skipped: list[Skip] = []
    found: dict[str, Candidate] = {}
    given_paths = []
    for given in paths:
        path = Path(given).expanduser()
        if not path.exists():
            skipped.append(Skip(str(given), "no such file or folder"))
            continue
        path = path.resolve()
        confinement.add(path, path.is_dir())
        given_paths.append(path)
    for path in given_paths:
        if path.is_dir():
            files = list(_walk(str(path), confinement, skipped))
            cands = []
            for listed_file, _ in files:
                if os.path.splitext(listed_file)[1].lower() in LIST_SUFFIXES:
                    cands += _list_candidates(Path(listed_file), skipped, confinement, explicit=False)
            listed = {str(f) for c in cands for f in c.files}
            cands += _files_to_candidates([f for f in files if f[0] not in listed], str(path), skipped)
        elif path.suffix.lower() in LIST_SUFFIXES:
            cands = _list_candidates(path, skipped, confinement, explicit=True)
        else:
            cands = _files_to_candidates([(str(path), path.is_file())], str(path.parent), skipped)
        for cand in cands:
            found.setdefault(cand.uri, cand)
    return list(found.values()), skipped


__all__ = ["Candidate", "MODALITIES", "Skip", "discover"]
