"""Giving freed heap memory back to the operating system after a large query.

glibc keeps what a thread frees in that thread's arena, and blocks under its mmap threshold
(which rises to 32 MiB once a block that large is freed) on its heaps: after a query decoded a
large image or clip, a server can keep hundreds of MB it no longer uses. `malloc_trim(0)`
returns the free pages of every arena. It runs on a background thread, shortly after the
decoded media is let go (so the request that freed it does not wait), at most once per
`MIN_INTERVAL`. On other C libraries (musl, macOS, Windows) all of this does nothing.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
import weakref
from collections.abc import Callable

TRIM_MIN_BYTES = 8 << 20
"""Decoded media at least this large asks for a trim when it is freed; its model preprocessing
makes several float copies of it, and those are what stays behind."""
DELAY = 0.05
"""Seconds between a request and the trim: the freeing finishes first (a finalizer runs just
before the object's memory is released)."""
MIN_INTERVAL = 0.5
"""Least seconds between two trims, so a stream of large queries costs one every so often."""


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none."""
    try:
        func = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    func.argtypes = [ctypes.c_size_t]
    func.restype = ctypes.c_int
    return func


_MALLOC_TRIM = _load_malloc_trim()


def can_trim() -> bool:
    """Whether this process's C library can give memory back on request."""
    return _MALLOC_TRIM is not None


def trim_heap() -> bool:
    """Return free heap pages to the OS now (the GIL is released meanwhile); True if anything
    was returned, False too where there is no malloc_trim."""
    return bool(_MALLOC_TRIM(0)) if _MALLOC_TRIM is not None else False


class _Trimmer:
    """One daemon thread that trims when asked, coalescing requests that arrive together."""

    def __init__(self) -> None:
        self._wanted = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.count = 0

    def request(self) -> None:
        if _MALLOC_TRIM is None:
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="crossmodal-trim", daemon=True)
                self._thread.start()
        self._wanted.set()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            time.sleep(DELAY)
            self._wanted.clear()
            trim_heap()
            self.count += 1
            time.sleep(MIN_INTERVAL)

    def _after_fork(self) -> None:
        """A forked child has no trim thread; the next request starts its own."""
        self._wanted = threading.Event()
        self._lock = threading.Lock()
        self._thread = None


_TRIMMER = _Trimmer()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_TRIMMER._after_fork)


def request_trim() -> None:
    """Ask for a trim soon, on the background thread."""
    _TRIMMER.request()


def trims_done() -> int:
    """Trims made so far by the background thread (for tests and measurements)."""
    return _TRIMMER.count


def trim_when_freed(media: object, nbytes: int) -> None:
    """Trim the heap once ``media`` (decoded, about ``nbytes`` large) is garbage, if that is
    large enough to matter."""
    if nbytes >= TRIM_MIN_BYTES and _MALLOC_TRIM is not None:
        weakref.finalize(media, request_trim)
