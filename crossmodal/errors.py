"""Every error crossmodal raises on purpose, in one hierarchy with no transport in it.

Library code raises these; the front ends decide what they become: the CLI prints the message
and exits with a code, the HTTP server maps each class to a status (see
`crossmodal.server.app`). A message always names the field, file or collection at fault.
"""

from __future__ import annotations

from pathlib import Path


class CrossmodalError(Exception):
    """Base class for every error crossmodal raises on purpose."""


class ConfigError(CrossmodalError):
    """A configuration file or value is missing, unknown or inconsistent."""


class CheckpointError(CrossmodalError):
    """A model checkpoint is missing, corrupt, or disagrees with its config."""


# What a caller asked for is wrong.
class InputError(CrossmodalError):
    """A request or command input is invalid; the message names the field."""


class QueryError(InputError):
    """A query field is missing or invalid; the message names the field."""


class TooLargeError(InputError):
    """An input is larger than the configured limit (an upload, a body)."""


class MediaTypeError(InputError):
    """A file's content is not the kind of media its field asks for."""


class ItemListError(InputError):
    """A line of a JSONL item list is malformed; the message names the file and line."""

    def __init__(self, path: str | Path, line: int, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{self.path}:{line}: {reason}")


class _NamesAFile:
    """An error about one file: ``path`` and ``reason`` stay available to callers."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class AccessError(CrossmodalError):
    """The caller may not do this: another user's history, or anything without the server's token."""


class NotFoundError(CrossmodalError):
    """An item, user or file the caller named does not exist."""


class DecodeError(_NamesAFile, CrossmodalError):
    """A media file could not be read or decoded; the message names the file."""


# The collection itself is missing, damaged, busy or unreachable.
class StorageError(CrossmodalError):
    """A collection, its catalog or its indexes cannot be used as asked."""


class CollectionError(StorageError):
    """A collection is missing, damaged, or was built with another model."""


class BusyError(CollectionError):
    """Another process is writing the collection."""


class ReadOnlyError(CrossmodalError):
    """The collection is open as a search node (from its Milvus server), which cannot change it or
    read users' feedback."""


class ModelChangedError(CollectionError):
    """The collection's model reference now loads other weights (an upgraded starter model, a
    replaced file): its vectors no longer match what queries would be embedded with."""


class CatalogError(StorageError):
    """The catalog database is missing, corrupt, or from another version."""


class BackendError(StorageError):
    """An index backend is unknown, unreachable, or refused an operation; the message says which."""


class IndexFileError(_NamesAFile, StorageError):
    """An index file is missing, unreadable, corrupt or not a crossmodal index; the message names the file."""


class IndexInputError(StorageError, ValueError):
    """Vectors, ids, queries or parameters handed to an index are malformed (shape, dtype, duplicates...)."""
