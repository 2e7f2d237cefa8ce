"""Modality detection from a file's first bytes, so a mislabelled extension cannot fool ingest."""

from __future__ import annotations

import os
from pathlib import Path

from crossmodal.errors import DecodeError

SNIFF_BYTES = 64
TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown"})


def _is_image(head: bytes) -> bool:
    return (head.startswith(b"\xff\xd8\xff")                      # JPEG
            or head.startswith(b"\x89PNG\r\n\x1a\n")              # PNG
            or head[:6] in (b"GIF87a", b"GIF89a")                 # GIF
            or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")    # WebP
            or head.startswith(b"BM")                             # BMP
            or head[:4] in (b"II*\x00", b"MM\x00*"))              # TIFF


def _is_audio(head: bytes) -> bool:
    return ((head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE")  # WAV
            or head.startswith(b"fLaC")                                           # FLAC
            or head.startswith(b"OggS")                                           # Ogg Vorbis/Opus/FLAC
            or head.startswith(b"ID3")                                            # MP3 with ID3 tag
            or (len(head) > 1 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0    # MPEG audio frame sync
                and (head[1] & 0x06) != 0)
            or (head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC")))        # AIFF


def sniff_bytes(head: bytes, suffix: str = "") -> str | None:
    """'image', 'audio', 'text' or None (unsupported) from a file's leading bytes.

    Text has no magic number, so it is accepted only for text suffixes and only when the
    leading bytes hold no NUL (full UTF-8 validation happens when the file is read).
    """
    if _is_image(head):
        return "image"
    if _is_audio(head):
        return "audio"
    if suffix.lower() in TEXT_SUFFIXES and b"\x00" not in head:
        return "text"
    return None


def sniff_file(path: str | Path) -> str | None:
    """Modality of a file on disk, or None when it is not one crossmodal reads. Plain file
    descriptors, not a buffered file object: discovery sniffs every file before the first batch
    can start, and this halves what each one costs."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            head = os.read(fd, SNIFF_BYTES)
        finally:
            os.close(fd)
    except OSError as exc:
        raise DecodeError(path, f"cannot read file ({exc.strerror or exc})") from None
    if not head:
        raise DecodeError(path, "file is empty")
    return sniff_bytes(head, os.path.splitext(path)[1])


_MIME = (
    (lambda h: h.startswith(b"\xff\xd8\xff"), "image/jpeg"),
    (lambda h: h.startswith(b"\x89PNG\r\n\x1a\n"), "image/png"),
    (lambda h: h[:6] in (b"GIF87a", b"GIF89a"), "image/gif"),
    (lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP", "image/webp"),
    (lambda h: h.startswith(b"BM"), "image/bmp"),
    (lambda h: h[:4] in (b"II*\x00", b"MM\x00*"), "image/tiff"),
    (lambda h: h[:4] in (b"RIFF", b"RIFX", b"RF64") and h[8:12] == b"WAVE", "audio/wav"),
    (lambda h: h.startswith(b"fLaC"), "audio/flac"),
    (lambda h: h.startswith(b"OggS"), "audio/ogg"),
    (lambda h: h[:4] == b"FORM" and h[8:12] in (b"AIFF", b"AIFC"), "audio/aiff"),
)


def mime_type(head: bytes, modality: str | None = None) -> str:
    """The Content-Type to serve a catalogued file with, from its first bytes."""
    for test, mime in _MIME:
        if test(head):
            return mime
    if modality == "audio" or _is_audio(head):
        return "audio/mpeg"
    return "text/plain; charset=utf-8" if modality == "text" else "application/octet-stream"
