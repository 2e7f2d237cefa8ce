"""A collection's manifest published inside its Milvus server, so that a search node on another
machine finds the published indexes without the collection folder (`storage/replica.py`).

The indexer writes the manifest file in the folder first (the source of truth for every process on
its machine), then upserts it here as the one row of ``<prefix>_manifest``: the manifest as JSON
plus the collection's roots (which folders files may be served from), under a version that
changes with every publish. Only then does it drop the Milvus collections the old manifest named,
so a search node that has not yet seen the new row still finds every collection its old one
names. Milvus needs a vector field in every collection; this one holds a two-number placeholder.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pymilvus import DataType, MilvusClient

from crossmodal.errors import BackendError
from crossmodal.storage.backends.milvus_index import READ

SUFFIX = "_manifest"
ROW = 0
MAX_BYTES = 65_535
"""Milvus's longest VARCHAR: a manifest holds index entries and anchors, a few KB."""


def collection_name(prefix: str) -> str:
    return prefix + SUFFIX


def _create(client: MilvusClient, name: str) -> None:
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)
    schema.add_field("version", DataType.INT64)
    schema.add_field("body", DataType.VARCHAR, max_length=MAX_BYTES)
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_name="vector", index_type="FLAT", metric_type="L2", params={})
    client.create_collection(name, schema=schema, consistency_level="Strong")
    client.create_index(name, index, sync=False)


def publish(client: MilvusClient, prefix: str, manifest: dict[str, Any], roots: list[dict[str, Any]]) -> int:
    """Upsert the manifest and roots as the collection's one manifest row; returns its version."""
    body = json.dumps({"manifest": manifest, "roots": roots}, separators=(",", ":"))
    if len(body.encode("utf-8")) > MAX_BYTES:
        raise BackendError(f"the manifest of {prefix} is {len(body.encode('utf-8'))} bytes, more than the "
                           f"{MAX_BYTES} a Milvus field holds; search nodes cannot be given it")
    name = collection_name(prefix)
    if not client.has_collection(name):
        _create(client, name)
    client.load_collection(name)
    version = time.time_ns()
    client.upsert(name, [{"id": ROW, "vector": [0.0, 0.0], "version": version, "body": body}])
    client.query(name, filter=f"id == {ROW}", output_fields=["version"], consistency_level="Strong")  # consumed
    return version


def read(client: MilvusClient, prefix: str, known: int | None = None) -> tuple[int, dict[str, Any] | None] | None:
    """(version, {"manifest", "roots"}) of the published row; the body is None when the version is
    ``known`` (nothing changed, and only the version was read). None when nothing is published."""
    name = collection_name(prefix)
    if not client.has_collection(name):
        return None
    client.load_collection(name)
    rows = client.query(name, filter=f"id == {ROW}", output_fields=["version"], consistency_level=READ)
    if not rows:
        return None
    version = int(rows[0]["version"])
    if version == known:
        return version, None
    rows = client.query(name, filter=f"id == {ROW}", output_fields=["version", "body"], consistency_level=READ)
    if not rows:
        return None
    return int(rows[0]["version"]), json.loads(rows[0]["body"])


def drop(client: MilvusClient, prefix: str) -> None:
    name = collection_name(prefix)
    if client.has_collection(name):
        client.drop_collection(name)
