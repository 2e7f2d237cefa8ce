"""Uploaded query media: size-bounded, kept in a per-request temporary folder that is removed
when the request ends. What the file holds is checked by the core, from its bytes."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import BinaryIO

from crossmodal.errors import InputError, TooLargeError

CHUNK = 1 << 16


class UploadFolder:
    """A private temporary folder for one request's uploads, one file per form field."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="crossmodal-upload-")
        self.path = Path(self._tmp.name)

    def __enter__(self) -> UploadFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self._tmp.cleanup()

    def save(self, field: str, stream: BinaryIO, max_bytes: int) -> Path:
        """Copy an uploaded stream to disk, refusing more than ``max_bytes``. The file is named
        after its field, never the client's name, so errors can quote it safely."""
        path = self.path / field
        size = 0
        with open(path, "wb") as out:
            while block := stream.read(CHUNK):
                size += len(block)
                if size > max_bytes:
                    raise TooLargeError(f"{field}: upload is larger than {max_bytes / (1 << 20):g} MB")
                out.write(block)
        if size == 0:
            raise InputError(f"{field}: the uploaded file is empty")
        return path
