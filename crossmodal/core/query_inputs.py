"""Query files in, decoded media out: the checks every front end would otherwise repeat.

A query's image or audio file is sniffed (its content must be the kind its part asks for,
whatever its name), read once within a byte budget, hashed (so a repeated upload embeds once)
and decoded with the query bounds of `SearchSettings` (pixels, seconds, and decoded bytes,
checked from the header before anything large is allocated). Errors name the part and the file
by its name only, never a server folder. Decoded media of some size asks, once it is let go,
for the heap to be given back to the OS (`core.memory`), so one large query does not leave
the server hundreds of MB bigger.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

from PIL import Image

from crossmodal.core.memory import request_trim, trim_when_freed
from crossmodal.errors import DecodeError, MediaTypeError, TooLargeError
from crossmodal.ingest.decode import DecodeLimits, decode_audio, decode_image, image_pixel_bytes, read_small_file
from crossmodal.ingest.sniff import SNIFF_BYTES, sniff_bytes
from crossmodal.media import Waveform
from crossmodal.search.query import Query, QueryPart
from crossmodal.settings import SearchSettings

_FORMATS = {"audio": "WAV, FLAC, OGG or MP3", "image": "JPEG, PNG, WebP, GIF, BMP or TIFF"}


def _check_kind(part: QueryPart, data: bytes) -> None:
    found = sniff_bytes(data[:SNIFF_BYTES])
    if found != part.modality:
        what = f"{found} data" if found else "not a supported image or audio format"
        raise MediaTypeError(f"{part.modality}: expected {part.modality} ({_FORMATS[part.modality]}), got {what}")


def query_limits(settings: SearchSettings) -> DecodeLimits:
    """The bounds a query file is decoded under."""
    return DecodeLimits(max_image_pixels=settings.query_max_image_pixels,
                        max_audio_seconds=settings.query_max_audio_seconds,
                        max_image_bytes=settings.query_max_image_bytes,
                        max_audio_bytes=settings.query_max_audio_bytes)


def _decoded_bytes(media: Image.Image | Waveform) -> int:
    if isinstance(media, Waveform):
        return int(media.samples.nbytes)
    return media.width * media.height * image_pixel_bytes(media.mode)


def decode_part(part: QueryPart, settings: SearchSettings) -> QueryPart:
    """``part`` with its file decoded (parts without a file are returned as they are)."""
    if part.path is None or part.media is not None:
        return part
    path: Path = part.path
    name = path.name
    try:
        data = read_small_file(path, settings.query_max_file_bytes)
        if data is None:
            raise TooLargeError(f"{part.modality}: {name} is larger than {settings.query_max_file_bytes:,} bytes")
        _check_kind(part, data)
        limits = query_limits(settings)
        media = decode_image(path, limits, data) if part.modality == "image" else decode_audio(path, limits, data)
    except DecodeError as exc:
        request_trim()  # a decode may have failed after reading part of a file
        raise DecodeError(name, f"cannot decode ({exc.reason.replace(str(path), name)})") from None
    trim_when_freed(media, _decoded_bytes(media))
    return part.decoded(media, hashlib.sha256(data).hexdigest())


def decode_query(query: Query, settings: SearchSettings) -> Query:
    """The query with every file part decoded."""
    return replace(query, parts=tuple(decode_part(p, settings) for p in query.parts))
