"""Typed errors: library code raises these, only the CLI turns them into exit codes."""

from __future__ import annotations

from pathlib import Path


class CrossmodalError(Exception):
    """Base class for every error crossmodal raises on purpose."""


class ConfigError(CrossmodalError):
    """A configuration file or value is missing, unknown or inconsistent."""


class ItemListError(CrossmodalError):
    """A line of a JSONL item list is malformed; the message names the file and line."""

    def __init__(self, path: str | Path, line: int, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{self.path}:{line}: {reason}")


class DecodeError(CrossmodalError):
    """A media file could not be read or decoded; the message names the file."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class CheckpointError(CrossmodalError):
    """A model checkpoint is missing, corrupt, or disagrees with its config."""
