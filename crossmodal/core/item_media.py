"""An item's media as a front end shows it: the catalogued file to send, or the item's text,
and image thumbnails.

Only a catalogued file whose real path lies inside one of the collection's roots is sent, and
that is checked when the request comes, not when the file was indexed: a file swapped for a link
to elsewhere since is refused. The file is opened without following a final link, and (where
the system can say) the file actually opened is checked again, so a swap between the check and
the open is caught too.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from crossmodal.errors import DecodeError, NotFoundError, QueryError
from crossmodal.ingest.decode import DecodeLimits, decode_image
from crossmodal.ingest.sniff import SNIFF_BYTES, mime_type
from crossmodal.items import Root

THUMBNAIL_MIN, THUMBNAIL_MAX = 16, 1024
THUMBNAIL_SOURCE_MAX_BYTES = 64 << 20
_PROC_FD = Path("/proc/self/fd")


def _inside(real: str, roots: Sequence[Root]) -> bool:
    return any(root.contains(real) for root in roots)


def open_confined(path: Path, roots: Sequence[Root]) -> tuple[BinaryIO, os.stat_result]:
    """The regular file at ``path``, opened for reading, if its real path lies inside a root;
    NotFoundError otherwise (a missing file, a link out of the roots, a device or a pipe)."""
    real = os.path.realpath(path)
    if not _inside(real, roots):
        raise NotFoundError(f"{path.name}: outside the collection's folders")
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        raise NotFoundError(f"{path.name}: no longer available") from None
    try:
        st = os.fstat(fd)
        opened = os.path.realpath(_PROC_FD / str(fd)) if _PROC_FD.is_dir() else real
        if not stat.S_ISREG(st.st_mode) or not _inside(opened, roots):
            raise NotFoundError(f"{path.name}: not a regular file inside the collection's folders")
        return os.fdopen(fd, "rb"), st
    except BaseException:
        os.close(fd)
        raise


@dataclass(frozen=True)
class ItemMedia:
    """What to send for an item: a catalogued file (with its sniffed type) or, for text items,
    the text. `open` gives the file, checked against the roots again."""

    item_id: int
    modality: str
    mime_type: str
    path: Path | None = None
    text: str | None = None
    roots: tuple[Root, ...] = ()

    def open(self) -> tuple[BinaryIO, os.stat_result]:
        """The file, open for reading, and its status; the caller closes it."""
        if self.path is None:
            raise NotFoundError(f"item {self.item_id} has no file")
        return open_confined(self.path, self.roots)


def _catalogued_file(item: dict[str, Any], roots: Sequence[Root]) -> Path | None:
    """The first of the item's files that is still there and inside the roots."""
    for uri in item["uris"]:
        if "#L" in uri:  # a line of an item list, not a file
            continue
        path = Path(uri)
        if path.is_file() and _inside(os.path.realpath(path), roots):
            return path
    return None


def item_media(item: dict[str, Any], roots: Sequence[Root]) -> ItemMedia:
    """The media of a catalogued item (as `Catalog.item` gives it)."""
    item_id = int(item["id"])
    if item["modality"] == "text":
        text = "\n\n".join(s["text"] for s in item["segments"] if s["modality"] == "text" and s["text"])
        return ItemMedia(item_id, "text", "text/plain; charset=utf-8", text=text)
    path = _catalogued_file(item, roots)
    if path is None:
        raise NotFoundError(f"the file of item {item_id} is not available")
    handle, _ = open_confined(path, roots)
    with handle:
        head = handle.read(SNIFF_BYTES)
    return ItemMedia(item_id, item["modality"], mime_type(head, item["modality"]), path=path, roots=tuple(roots))


def thumbnail_png(item: dict[str, Any], roots: Sequence[Root], size: Any, max_pixels: int) -> bytes:
    """A PNG of an image item fitting ``size`` pixels; small images are scaled up to 128 so a
    28-pixel digit is visible."""
    if isinstance(size, bool) or not isinstance(size, (int, str)) or not str(size).isdigit() \
            or not THUMBNAIL_MIN <= int(size) <= THUMBNAIL_MAX:
        raise QueryError(f"size: expected an integer from {THUMBNAIL_MIN} to {THUMBNAIL_MAX}")
    size = int(size)
    item_id = int(item["id"])
    if item["modality"] != "image":
        raise NotFoundError(f"item {item_id} is {item['modality']}; only images have thumbnails")
    media = item_media(item, roots)
    handle, st = media.open()
    with handle:
        if st.st_size > THUMBNAIL_SOURCE_MAX_BYTES:
            raise DecodeError(f"item {item_id}", "the image file is too large to make a thumbnail of")
        data = handle.read(THUMBNAIL_SOURCE_MAX_BYTES)
    try:
        img = decode_image(Path(f"item {item_id}"), DecodeLimits(max_image_pixels=max_pixels), data)
    except DecodeError:
        raise DecodeError(f"item {item_id}", "the image can no longer be decoded") from None
    img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    img.thumbnail((size, size))
    if max(img.size) < min(size, 128):
        scale = min(size, 128) / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), 0)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
