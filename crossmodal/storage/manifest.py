"""A collection's ``manifest.json``: format, model, backend, counts and the published indexes.

It is the one file that says which index files (or Milvus collections) are current, so it is
only ever replaced whole (`atomic_write_text`): a reader sees the old set or the new one.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossmodal import __version__
from crossmodal.errors import BackendError, CollectionError
from crossmodal.storage.backends.base import check_backend

FORMAT = "crossmodal-collection"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ModelInfo:
    """Which aligner a collection's vectors come from."""

    model_id: str
    sha256: str | None
    ref: str
    embed_dim: int
    source: dict[str, Any] | None = None
    """Per tower, the pretrained weights a model made of them as they are was built from
    (architecture, tag or file, the file's SHA-256); None for a trained checkpoint."""


def recorded_model(manifest: dict[str, Any]) -> ModelInfo:
    """The model a manifest records."""
    m = manifest["model"]
    return ModelInfo(m["id"], m.get("sha256"), m["ref"], int(m["embed_dim"]))


def refuse_other_model(name: str, mine: ModelInfo, model: ModelInfo) -> None:
    """CollectionError unless ``model`` is the collection's own (vectors of two models do not mix)."""
    same = mine.sha256 == model.sha256 if mine.sha256 and model.sha256 else mine.model_id == model.model_id
    if not same or mine.embed_dim != model.embed_dim:
        raise CollectionError(
            f"collection {name!r} was built with model {mine.model_id}, not {model.model_id}; "
            f"search it without --model (its own model is used), or rebuild it for the new model with "
            f"`crossmodal index PATH... --collection {name} --model {model.ref} --rebuild`")


def atomic_write_text(path: Path, text: str) -> None:
    """Temporary file, fsync, rename, fsync of the folder: the old or the new file, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of the collection at ``folder``; CollectionError naming the fix otherwise."""
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CollectionError(f"no collection at {folder} (no {MANIFEST}); build one with "
                              f"`crossmodal index PATH --collection {folder.name}`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CollectionError(f"{path}: unreadable collection manifest ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CollectionError(f"{path}: not a crossmodal collection manifest")
    if data.get("format_version") != FORMAT_VERSION:
        raise CollectionError(f"{path}: collection format {data.get('format_version')}, this crossmodal "
                              f"reads {FORMAT_VERSION}; rebuild it with `crossmodal index --rebuild`")
    return data


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=2))


def new_manifest(name: str, model: ModelInfo, backend: dict[str, Any]) -> dict[str, Any]:
    """The manifest of an empty collection: no index published yet."""
    now = time.time()
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "crossmodal_version": __version__,
        "name": name, "created_at": now, "updated_at": now,
        "model": {"id": model.model_id, "sha256": model.sha256, "ref": model.ref, "embed_dim": model.embed_dim,
                  **({"source": model.source} if model.source is not None else {})},
        "backend": backend, "catalog_generation": -1, "max_vector_id": 0, "counts": {}, "indexes": {},
    }


def backend_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest's backend block; collections from before backends existed are FAISS."""
    return manifest.get("backend") or {"name": "faiss"}


def new_backend_spec(name: str, collection: str, milvus_uri: str = "") -> dict[str, Any]:
    """The backend block for a new collection (or a migration): FAISS, or Milvus at ``milvus_uri``
    (a server URL, or a Milvus Lite file; default ``milvus.db`` in the collection folder)."""
    check_backend(name)
    if name == "faiss":
        if milvus_uri:
            raise BackendError("--milvus-uri needs the milvus backend")
        return {"name": "faiss"}
    return milvus_module().new_spec(milvus_uri, collection)


def same_place(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two backend blocks name the same store."""
    return a["name"] == b["name"] and a.get("uri") == b.get("uri")


def milvus_module():
    """The Milvus backend module, imported on demand: pymilvus is an optional dependency."""
    try:
        from crossmodal.storage.backends import milvus_backend
    except ImportError as exc:
        raise BackendError(f"the milvus backend needs pymilvus and milvus-lite ({exc}); install them with "
                           f"pip install 'crossmodal[milvus]'") from None
    return milvus_backend
