"""An item's media as a front end shows it: the catalogued file to send, or the item's text,
and image thumbnails. Only files the catalog holds are ever opened."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossmodal.errors import DecodeError, NotFoundError, QueryError
from crossmodal.ingest.decode import DecodeLimits, decode_image
from crossmodal.ingest.sniff import SNIFF_BYTES, mime_type

THUMBNAIL_MIN, THUMBNAIL_MAX = 16, 1024


@dataclass(frozen=True)
class ItemMedia:
    """What to send for an item: a file (with its sniffed type) or, for text items, the text."""

    item_id: int
    modality: str
    mime_type: str
    path: Path | None = None
    text: str | None = None


def _catalogued_file(item: dict[str, Any]) -> Path | None:
    for uri in item["uris"]:
        if "#L" in uri:  # a line of an item list, not a file
            continue
        path = Path(uri)
        if path.is_file():
            return path
    return None


def item_media(item: dict[str, Any]) -> ItemMedia:
    """The media of a catalogued item (as `Catalog.item` gives it)."""
    item_id = int(item["id"])
    if item["modality"] == "text":
        text = "\n\n".join(s["text"] for s in item["segments"] if s["modality"] == "text" and s["text"])
        return ItemMedia(item_id, "text", "text/plain; charset=utf-8", text=text)
    path = _catalogued_file(item)
    if path is None:
        raise NotFoundError(f"the file of item {item_id} is no longer available")
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    return ItemMedia(item_id, item["modality"], mime_type(head, item["modality"]), path=path)


def thumbnail_png(item: dict[str, Any], size: Any, max_pixels: int) -> bytes:
    """A PNG of an image item fitting ``size`` pixels; small images are scaled up to 128 so a
    28-pixel digit is visible."""
    if isinstance(size, bool) or not isinstance(size, (int, str)) or not str(size).isdigit() \
            or not THUMBNAIL_MIN <= int(size) <= THUMBNAIL_MAX:
        raise QueryError(f"size: expected an integer from {THUMBNAIL_MIN} to {THUMBNAIL_MAX}")
    size = int(size)
    item_id = int(item["id"])
    if item["modality"] != "image":
        raise NotFoundError(f"item {item_id} is {item['modality']}; only images have thumbnails")
    path = _catalogued_file(item)
    if path is None:
        raise NotFoundError(f"the file of item {item_id} is no longer available")
    try:
        img = decode_image(path, DecodeLimits(max_image_pixels=max_pixels))
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
