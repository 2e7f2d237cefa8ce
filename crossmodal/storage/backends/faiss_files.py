"""FAISS index files: written atomically (a crash leaves the old file or the new one, never a
torn one) and read back with errors that name the file."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import faiss

from crossmodal.errors import IndexFileError, IndexInputError
from crossmodal.storage.backends.faiss_index import parts_of


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_index(index: faiss.Index, path: Path) -> None:
    """Write atomically: temp file in the same folder, fsync, os.replace, fsync the folder, so a crash leaves either
    the old file or the new one, never a torn one."""
    path = Path(path)
    parts_of(index)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise IndexFileError(path, f"cannot create a file next to it: {exc.strerror or exc}") from exc
    os.close(fd)
    try:
        try:
            faiss.write_index(index, tmp_name)
        except RuntimeError as exc:
            raise IndexFileError(path, f"could not write index: {exc}") from exc
        fd = os.open(tmp_name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(folder)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in blocks (an index file may be larger than memory can spare twice)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    except OSError as exc:
        raise IndexFileError(path, f"cannot be read ({exc.strerror or exc})") from exc
    return digest.hexdigest()


def read_index(path: Path) -> faiss.Index:
    """Read an index written by write_index; IndexFileError naming the file when it is missing, corrupt or foreign."""
    path = Path(path)
    if not path.exists():
        raise IndexFileError(path, "index file does not exist")
    if not path.is_file():
        raise IndexFileError(path, "not a regular file")
    try:
        index = faiss.read_index(str(path))
    except (RuntimeError, MemoryError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise IndexFileError(path, f"corrupt or unreadable FAISS index ({detail})") from exc
    try:
        parts_of(index)
    except IndexInputError as exc:
        raise IndexFileError(path, str(exc)) from exc
    return index
