"""One writer at a time per collection, across processes; readers are never blocked.

An advisory ``flock`` on ``.lock`` in the collection folder: the kernel releases it when the
holder exits, however it exits, so a killed writer never leaves a collection locked.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from crossmodal.errors import BusyError

LOCK_FILE = ".lock"


@contextmanager
def writer_lock(folder: Path, wait: float = 0.0) -> Iterator[None]:
    """Hold the collection's writer lock; BusyError when another process holds it for longer
    than ``wait`` seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "w") as handle:
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BusyError(f"collection {folder.name!r} is being written by another process") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def writer_active(folder: Path) -> bool:
    """Whether a process holds the collection's writer lock right now (a read-only check uses this
    to avoid calling a running writer's temporary files leftovers). It takes the lock for an
    instant when it is free."""
    try:
        handle = open(folder / LOCK_FILE, "a")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
