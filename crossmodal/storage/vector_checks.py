"""Checksums of stored vectors, and the test a stored vector passes before it is used.

Every vector the catalog stores carries the CRC32 of its float32 bytes (``vectors.checksum``).
A read that feeds search, personalisation or an index build checks the rows it returns, which
costs a CRC and a norm per row: only the rows a query actually scores, or the rows a build
reads anyway. A vector fails when its bytes no longer match the checksum, when it has the wrong
length, or when it is not a finite unit vector (everything crossmodal stores is L2-normalised,
so anything else is damage, whatever its checksum says). A failing vector is left out and
logged once; `crossmodal check` finds them all.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections import Counter
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)

NORM_TOLERANCE = 1e-2
"""How far from 1 a stored vector's norm may be; the FAISS indexes refuse the same rows."""
_LOGGED_MAX = 10_000


def checksum(blob: bytes) -> int:
    """The checksum stored beside a vector: CRC32 of its float32 bytes."""
    return zlib.crc32(blob)


def faults(blobs: Sequence[bytes], checksums: Sequence[int | None], dim: int | None = None) -> dict[int, str]:
    """Why each damaged row is damaged, by its position in ``blobs``; sound rows are absent.

    A missing checksum (a row written by an older crossmodal) skips only the checksum test.
    ``dim`` is the collection's dimension; without it the commonest length is taken as right."""
    out: dict[int, str] = {}
    if not blobs:
        return out
    size = 4 * dim if dim else Counter(len(b) for b in blobs).most_common(1)[0][0]
    good: list[int] = []
    for row, (blob, crc) in enumerate(zip(blobs, checksums)):
        if crc is not None and zlib.crc32(blob) != crc:
            out[row] = "its bytes do not match their checksum"
        elif len(blob) != size or not size:
            out[row] = f"it is {len(blob)} bytes long, not {size}"
        else:
            good.append(row)
    if good:
        matrix = np.frombuffer(b"".join(blobs[r] for r in good), dtype=np.float32).reshape(len(good), -1)
        with np.errstate(all="ignore"):
            wide = matrix.astype(np.float64)
            norms = np.sqrt(np.einsum("ij,ij->i", wide, wide))
            bad = np.flatnonzero(~(np.abs(norms - 1.0) <= NORM_TOLERANCE))  # NaN fails the test too
        for at in bad.tolist():
            norm = float(norms[at])
            out[good[at]] = (f"its norm is {norm:.4g}, not 1" if np.isfinite(norm)
                             else "it holds values that are not finite numbers")
    return out


class DamageLog:
    """Logs each damaged vector once per process (searches meet the same ones again and again),
    and remembers how many it has seen, for the health check."""

    def __init__(self, where: str) -> None:
        self.where = where
        self._seen: set[int] = set()
        self._lock = threading.Lock()

    @property
    def seen(self) -> int:
        return len(self._seen)

    def report(self, vector_id: int, item_id: int | None, reason: str) -> None:
        with self._lock:
            if vector_id in self._seen or len(self._seen) >= _LOGGED_MAX:
                return
            self._seen.add(vector_id)
        owner = f" of item {item_id}" if item_id is not None else ""
        log.warning("%s: stored vector %d%s is damaged (%s); it is left out of results and indexes until "
                    "`crossmodal check --repair` and a new `crossmodal index` of its file restore it",
                    self.where, vector_id, owner, reason)
