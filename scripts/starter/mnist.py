"""MNIST's IDX files (gzip'd or plain), read with every header field checked against the data.

A truncated download or a renamed file fails here with the file named, not later as a
shape error inside training.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from crossmodal.errors import ConfigError, DecodeError

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801
MNIST_SIDE = 28
_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_bytes(path: Path) -> bytes:
    """Read a possibly gzip'd file; the gzip magic decides, so renamed files still work."""
    try:
        with path.open("rb") as handle:
            head = handle.read(2)
            handle.seek(0)
            if head == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=handle) as unzipped:
                    return unzipped.read()
            return handle.read()
    except FileNotFoundError:
        raise DecodeError(path, "file not found") from None
    except (OSError, EOFError) as exc:
        raise DecodeError(path, f"cannot read ({exc})") from None


def _read_idx(path: str | Path, magic: int, ndim: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """Parse an IDX file of uint8 data, checking magic, header and length against each other."""
    path = Path(path)
    raw = _read_bytes(path)
    header_len = 4 + 4 * ndim
    if len(raw) < 4:
        raise DecodeError(path, f"too short for an IDX file ({len(raw)} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DecodeError(path, f"bad IDX magic 0x{found:08x}, expected 0x{magic:08x}")
    if len(raw) < header_len:
        raise DecodeError(path, f"truncated IDX header ({len(raw)} of {header_len} bytes)")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims, dtype=np.int64))
    actual = len(raw) - header_len
    if actual != expected:
        what = "truncated" if actual < expected else "trailing bytes in"
        raise DecodeError(path, f"{what} IDX data: header {dims} needs {expected} bytes, "
                                f"found {actual}")
    data = np.frombuffer(raw, dtype=np.uint8, offset=header_len)
    return data, dims


def read_idx_images(path: str | Path) -> np.ndarray:
    """Read an MNIST image IDX file (gzip'd or plain) as uint8 of shape (N, 28, 28)."""
    data, dims = _read_idx(path, IDX_IMAGES_MAGIC, 3)
    if dims[1:] != (MNIST_SIDE, MNIST_SIDE):
        raise DecodeError(path, f"images are {dims[1]}x{dims[2]}, expected "
                                f"{MNIST_SIDE}x{MNIST_SIDE}")
    return data.reshape(dims).copy()


def read_idx_labels(path: str | Path) -> np.ndarray:
    """Read an MNIST label IDX file (gzip'd or plain) as uint8 of shape (N,), values 0-9."""
    data, _ = _read_idx(path, IDX_LABELS_MAGIC, 1)
    if data.size and int(data.max()) > 9:
        raise DecodeError(path, f"label {int(data.max())} is not a digit 0-9")
    return data.copy()


def _mnist_file(mnist_dir: Path, stem: str) -> Path:
    """Prefer the canonical .gz download but accept an already unzipped copy."""
    for candidate in (mnist_dir / f"{stem}.gz", mnist_dir / stem):
        if candidate.is_file():
            return candidate
    raise DecodeError(mnist_dir / f"{stem}.gz", "file not found (nor an unzipped copy)")


def load_mnist(mnist_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load one MNIST split ("train" or "t10k") as (images, labels), checking they agree."""
    if split not in _MNIST_FILES:
        raise ConfigError(f"unknown MNIST split {split!r}; expected one of {sorted(_MNIST_FILES)}")
    mnist_dir = Path(mnist_dir)
    images_stem, labels_stem = _MNIST_FILES[split]
    labels_path = _mnist_file(mnist_dir, labels_stem)
    images = read_idx_images(_mnist_file(mnist_dir, images_stem))
    labels = read_idx_labels(labels_path)
    if len(images) != len(labels):
        raise DecodeError(labels_path, f"{len(labels)} labels for {len(images)} images")
    return images, labels
