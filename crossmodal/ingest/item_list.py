"""Item lists: JSONL files with one item per line, read by `index`, `train` and `eval`.

An item line looks like
``{"modality": "image"|"audio"|"text", "path": "...", "text": "...", "label": "...",
"group": "..."}``: media items carry ``path`` (relative to the list's folder), text items
carry ``text``. A *pair* line such as ``{"image": "a.png", "text": "a cat", "label": "cat"}``
names several modalities at once and becomes one item per modality sharing a group, so that
paired data can be written compactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from crossmodal.errors import ItemListError
from crossmodal.media import MODALITIES

_ITEM_KEYS = {"modality", "path", "text", "label", "group", "id", "meta"}
_PAIR_KEYS = set(MODALITIES) | {"label", "group", "id", "meta"}


@dataclass(frozen=True)
class ListItem:
    """One item of a list: a media file or a piece of text, with optional label/group."""

    modality: str
    path: Path | None = None
    text: str | None = None
    label: str | None = None
    group: str | None = None
    meta: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def source(self) -> str:
        """A human-readable name for error messages and reports."""
        if self.path is not None:
            return str(self.path)
        snippet = (self.text or "")[:40]
        return f"text {snippet!r}"


def _as_str(value: object, key: str, path: Path, line: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise ItemListError(path, line, f"field {key!r} must be a string, got {type(value).__name__}")
    return value


def _item_from_fields(
    modality: str, value: str, label: str | None, group: str | None, meta: dict, base: Path,
    path: Path, line: int,
) -> ListItem:
    if modality == "text":
        if not value.strip():
            raise ItemListError(path, line, "text item has an empty 'text' field")
        return ListItem("text", text=value, label=label, group=group, meta=meta)
    if not value:
        raise ItemListError(path, line, f"{modality} item has an empty 'path' field")
    media = Path(value)
    return ListItem(modality, path=media if media.is_absolute() else base / media,
                        label=label, group=group, meta=meta)


def parse_item_list_line(raw: str, path: Path, line: int) -> list[ListItem]:
    """Parse one JSONL line into one item (item line) or several (pair line)."""
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ItemListError(path, line, f"not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise ItemListError(path, line, "each line must be a JSON object")
    base = path.parent
    label = _as_str(obj.get("label"), "label", path, line)
    group = _as_str(obj.get("group"), "group", path, line)
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise ItemListError(path, line, "field 'meta' must be an object")

    if "modality" in obj:
        unknown = set(obj) - _ITEM_KEYS
        if unknown:
            raise ItemListError(path, line, f"unknown field(s) {sorted(unknown)}")
        modality = obj["modality"]
        if modality not in MODALITIES:
            raise ItemListError(path, line, f"'modality' must be one of {list(MODALITIES)}, got {modality!r}")
        key = "text" if modality == "text" else "path"
        value = _as_str(obj.get(key), key, path, line)
        if value is None:
            raise ItemListError(path, line, f"{modality} item needs a {key!r} field")
        return [_item_from_fields(modality, value, label, group, meta, base, path, line)]

    present = [m for m in MODALITIES if m in obj]
    if not present:
        raise ItemListError(path, line, "line has neither 'modality' nor any of 'text', 'image', 'audio'")
    unknown = set(obj) - _PAIR_KEYS
    if unknown:
        raise ItemListError(path, line, f"unknown field(s) {sorted(unknown)}")
    if group is None and len(present) > 1:
        group = f"{path.resolve()}:{line}"
    items = []
    for modality in present:
        value = _as_str(obj[modality], modality, path, line)
        if value is None:
            raise ItemListError(path, line, f"field {modality!r} is null")
        items.append(_item_from_fields(modality, value, label, group, meta, base, path, line))
    return items


def iter_item_list(path: str | Path) -> Iterator[ListItem]:
    """Yield the items of a JSONL item list, raising ItemListError on the first bad line."""
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ItemListError(path, 0, f"cannot open item list ({exc.strerror or exc})") from None
    with handle:
        for number, raw_bytes in enumerate(handle, start=1):
            try:
                raw = raw_bytes.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise ItemListError(path, number, "line is not UTF-8 text") from None
            if raw.strip():
                yield from parse_item_list_line(raw, path, number)


def read_item_list(path: str | Path) -> list[ListItem]:
    """Read a whole item list; an empty one is an error because nothing could be done with it."""
    items = list(iter_item_list(path))
    if not items:
        raise ItemListError(path, 0, "the item list holds no items")
    return items


def write_item_list(path: str | Path, rows: Iterable[dict]) -> int:
    """Write JSONL rows atomically; returns the number of rows written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    try:
        with tmp.open("w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return count
