"""Uploaded query media: size-bounded, sniffed by content, kept in a per-request temporary
folder that is removed when the request ends."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import BinaryIO

from crossmodal.errors import CrossmodalError
from crossmodal.ingest.sniff import SNIFF_BYTES, sniff_bytes

CHUNK = 1 << 16


class UploadError(CrossmodalError):
    """An upload is too large, of the wrong kind, or unreadable; ``status`` is the HTTP status."""

    def __init__(self, field: str, message: str, status: int) -> None:
        self.field = field
        self.status = status
        super().__init__(f"{field}: {message}")


class UploadFolder:
    """A private temporary folder for one request's uploads."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="crossmodal-upload-")
        self.path = Path(self._tmp.name)
        self.count = 0

    def __enter__(self) -> UploadFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self._tmp.cleanup()

    def save(self, field: str, stream: BinaryIO, expected: str, max_bytes: int) -> Path:
        """Copy an uploaded stream to disk (refusing more than ``max_bytes``) and check that its
        content is ``expected`` ('image' or 'audio'). The file name is ours, never the client's."""
        self.count += 1
        path = self.path / f"{field}-{self.count}"
        size = 0
        head = b""
        with open(path, "wb") as out:
            while True:
                block = stream.read(CHUNK)
                if not block:
                    break
                size += len(block)
                if size > max_bytes:
                    raise UploadError(field, f"upload is larger than {max_bytes // (1 << 20)} MB", 413)
                if len(head) < SNIFF_BYTES:
                    head += block[:SNIFF_BYTES - len(head)]
                out.write(block)
        if size == 0:
            raise UploadError(field, "the uploaded file is empty", 400)
        found = sniff_bytes(head)
        if found != expected:
            what = f"{found} data" if found else "not a supported image or audio format"
            hint = " (WAV, FLAC, OGG or MP3)" if expected == "audio" else " (JPEG, PNG, WebP, GIF, BMP or TIFF)"
            raise UploadError(field, f"expected {expected}{hint}, got {what}", 415)
        return path
