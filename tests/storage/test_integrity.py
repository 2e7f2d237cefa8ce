"""Integrity of what a collection stores: checksummed vectors that are never used once damaged,
index files checked against their manifest entries when opened, damaged indexes rebuilt and
leftovers of killed runs deleted by writers, and storage errors that reach the caller as one
crossmodal error naming the file. Real SQLite and FAISS files, damaged the way disks and people
damage them."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import zlib

import numpy as np
import pytest

from crossmodal.errors import CatalogError, CollectionError, IndexFileError
from crossmodal.items import NewItem, NewSegment
from crossmodal.settings import IndexSettings
from crossmodal.storage import damage
from crossmodal.storage.catalog import Catalog
from crossmodal.storage.collection import Collection
from crossmodal.storage.manifest import ModelInfo
from crossmodal.storage.schema import open_database

DIM = 8
MODEL = ModelInfo("test-model", "0" * 64, "test", DIM)


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _items(start: int, count: int) -> list[NewItem]:
    """``count`` image items, ``count`` audio items of one window each, and ``count`` text items:
    the image and audio indexes then hold as many vectors each, so their files have equal sizes."""
    out = []
    for i in range(start, start + count):
        out.append(NewItem(f"img{i}", "image", ("image",), {"label": str(i % 10)}, vectors={"image": _vec(i)}))
        out.append(NewItem(f"aud{i}", "audio", ("audio",), segments=[NewSegment("audio", 0, 1, _vec(1000 + i))]))
        out.append(NewItem(f"txt{i}", "text", ("text",), segments=[NewSegment("text", 0, 5, _vec(2000 + i), "t")]))
    return out


def _add(coll_or_catalog, items: list[NewItem]) -> list[int]:
    catalog = getattr(coll_or_catalog, "catalog", coll_or_catalog)
    with catalog.transaction():
        ids = catalog.add_items(items)
        for item, item_id in zip(items, ids):
            catalog.link_file(f"/data/{item.content_hash}", item_id, 1, 1, "sig", "/data")
    return ids


@pytest.fixture()
def folder(tmp_path):
    """A FAISS collection of 40 images, 40 recordings and 40 texts, its indexes published."""
    path = tmp_path / "coll"
    with Collection.create(path, MODEL) as coll:
        _add(coll, _items(0, 40))
        coll.sync_indexes(IndexSettings())
    return path


def _flip(path, vector_id: int, at: int = 4, count: int = 16) -> None:
    """Overwrite bytes of one stored vector in place, leaving its checksum as it was."""
    with sqlite3.connect(path) as conn:
        blob = bytearray(conn.execute("SELECT vector FROM vectors WHERE id=?", (vector_id,)).fetchone()[0])
        blob[at:at + count] = b"\x7f" * count
        conn.execute("UPDATE vectors SET vector=? WHERE id=?", (bytes(blob), vector_id))


# Vectors.

def test_every_stored_vector_carries_the_checksum_of_its_bytes(tmp_path):
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        _add(catalog, _items(0, 3))
        rows = catalog.db.execute("SELECT vector, checksum FROM vectors").fetchall()
    assert len(rows) == 9 and all(crc == zlib.crc32(blob) for blob, crc in rows)


def test_a_damaged_vector_is_never_returned_for_scoring_and_is_logged_once(tmp_path, caplog):
    path = tmp_path / "catalog.sqlite"
    with Catalog(path) as catalog:
        ids = _add(catalog, _items(0, 5))
        image_vectors = catalog.vectors_of_items([ids[0]])
    _flip(path, image_vectors[0])
    with Catalog(path) as catalog, caplog.at_level(logging.WARNING):
        owners = catalog.vector_owners(range(1, 16))
        assert image_vectors[0] not in owners and len(owners) == 14
        assert image_vectors[0] not in catalog.vectors_by_id([image_vectors[0], 2])
        ids_, matrix = catalog.vectors(["image"])
        assert image_vectors[0] not in ids_ and np.isfinite(matrix).all()
        assert ids[0] not in catalog.item_vectors([ids[0]])  # personalisation gets nothing from it
        catalog.vector_owners([image_vectors[0]])
    damaged = [r for r in caplog.records if f"stored vector {image_vectors[0]} " in r.getMessage()]
    assert len(damaged) == 1 and "do not match their checksum" in damaged[0].getMessage()


@pytest.mark.parametrize("value", [np.nan, np.inf, 3.0])
def test_non_finite_and_non_unit_vectors_count_as_damaged_whatever_their_checksum(tmp_path, value):
    bad = _vec(0)
    bad[0] = value
    if value == 3.0:
        bad = bad * 3.0  # finite, and its checksum is right, but not a unit vector
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        ids = _add(catalog, [NewItem("h", "image", ("image",), vectors={"image": bad}),
                             NewItem("g", "image", ("image",), vectors={"image": _vec(1)})])
        assert set(catalog.vector_owners([1, 2])) == {2}
        assert [d.item_id for d in damage.scan(catalog.db, DIM)] == [ids[0]]


def test_older_catalogs_get_checksums_added_in_place(tmp_path):
    path = tmp_path / "catalog.sqlite"
    with Catalog(path) as catalog:
        _add(catalog, _items(0, 4))
        before = catalog.vectors()
    with sqlite3.connect(path) as conn:  # what a catalog written before checksums looks like
        conn.execute("ALTER TABLE vectors DROP COLUMN checksum")
        conn.execute("DROP TABLE damaged_items")
        conn.execute("DELETE FROM info WHERE key='vector_checksums'")
    with Catalog(path) as catalog:
        after = catalog.vectors()
        assert catalog.db.execute("SELECT COUNT(*) FROM vectors WHERE checksum IS NULL").fetchone()[0] == 0
        assert catalog.counts()["items"] == 12
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    _flip(path, 3)
    with Catalog(path) as catalog:
        assert 3 not in catalog.vector_owners([3])


def test_an_item_recorded_as_damaged_is_embedded_again_under_its_own_id(tmp_path):
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        ids = _add(catalog, _items(0, 2))
        old_vectors = catalog.vectors_of_items([ids[1]])
        with catalog.transaction() as conn:
            damage.record(conn, {ids[1]: "test"})
        assert catalog.file_state("/data/aud0").signature is None  # so the next run reads its file again
        assert catalog.stored_hashes(["aud0", "img0"]) == {"img0"}
        assert catalog.content_lookup()(["aud0", "img0"]) == {"img0"}
        with catalog.transaction():
            again = catalog.add_items(_items(0, 1)[1:2])
        assert again == [ids[1]] and damage.recorded(catalog.db) == {}
        new_vectors = catalog.vectors_of_items([ids[1]])
        assert len(new_vectors) == 1 and min(new_vectors) > max(old_vectors)
        assert catalog.stored_hashes(["aud0"]) == {"aud0"}


# The catalog file.

def test_a_missing_or_empty_catalog_is_an_error_and_no_catalog_is_made(tmp_path):
    missing = tmp_path / "gone" / "catalog.sqlite"
    missing.parent.mkdir()
    with pytest.raises(CatalogError, match="the catalog is missing"):
        open_database(missing, create=False)
    assert list(missing.parent.iterdir()) == []
    empty = tmp_path / "catalog.sqlite"
    empty.touch()
    with pytest.raises(CatalogError, match="holds no catalog"):
        open_database(empty, create=False)
    assert empty.stat().st_size == 0


def test_sqlite_failures_become_one_catalog_error_naming_the_file(folder):
    path = folder / "catalog.sqlite"
    with Collection.open(folder) as coll:
        assert coll.database.damage is None
        pages = path.stat().st_size // 4096
        with open(path, "r+b") as handle:  # overwrite the second half of the file, page headers included
            for page in range(pages // 2, pages):
                handle.seek(page * 4096)
                handle.write(os.urandom(4096))
        with pytest.raises(CatalogError, match=r"catalog.sqlite: the catalog is damaged .*malformed.*crossmodal check"):
            for first in range(1, 400, 20):
                coll.catalog.vector_owners(range(first, first + 20))
        assert "malformed" in coll.database.damage
        assert any("malformed" in line for line in coll.health())


def test_a_catalog_without_its_manifest_is_not_started_over(folder):
    with Collection.open(folder) as coll:
        coll.feedback.add("ana", 1, "like")
    (folder / "manifest.json").unlink()
    with pytest.raises(CollectionError, match=r"holds a catalog \(120 items, 1 feedback events\) but no manifest"):
        Collection.create(folder, MODEL)
    with sqlite3.connect(folder / "catalog.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 1


# Index files.

def test_manifest_entries_record_kinds_dimension_count_size_and_checksum(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    image = manifest["indexes"]["image"]
    assert image["kinds"] == ["image"] and image["dim"] == DIM and image["ntotal"] == 40
    assert image["size"] == (folder / image["file"]).stat().st_size and len(image["sha256"]) == 64
    assert manifest["indexes"]["joint"]["kinds"] == ["text", "image", "audio", "fused"]


def _swap(folder, a: str, b: str) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    pa, pb = (folder / manifest["indexes"][n]["file"] for n in (a, b))
    tmp = folder / "swap"
    pa.rename(tmp)
    pb.rename(pa)
    tmp.rename(pb)


def test_index_files_swapped_with_equal_sizes_are_refused_when_opened(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["indexes"]["image"]["size"] == manifest["indexes"]["audio"]["size"]
    _swap(folder, "image", "audio")
    with Collection.open(folder) as coll:
        with pytest.raises(IndexFileError, match=r"image-\d+\.faiss: it holds audio vectors, but the image index is "
                                                 r"for image vectors.*crossmodal check --repair"):
            coll.index("image")
        with pytest.raises(IndexFileError, match=r"audio-\d+\.faiss: it holds image vectors"):
            coll.search("audio", _vec(0), 5)
        assert coll.index("text").count() == 40
        assert [line.split(": ")[1] for line in coll.health()] == ["it holds audio vectors, but the image index is "
                                                                   "for image vectors (index files swapped, or "
                                                                   "copied from another collection?)",
                                                                   "it holds image vectors, but the audio index is "
                                                                   "for audio vectors (index files swapped, or "
                                                                   "copied from another collection?)"]


def test_a_writer_notices_damaged_index_files_and_rebuilds_them(folder, caplog):
    manifest = json.loads((folder / "manifest.json").read_text())
    image = folder / manifest["indexes"]["image"]["file"]
    joint = folder / manifest["indexes"]["joint"]["file"]
    with open(image, "r+b") as handle:
        handle.truncate(image.stat().st_size // 2)
    with open(joint, "r+b") as handle:  # same size, other bytes: only its SHA-256 tells
        handle.seek(joint.stat().st_size - 100)
        handle.write(b"\0" * 50)
    _swap(folder, "text", "audio")
    with Collection.open(folder) as coll:
        with pytest.raises(IndexFileError, match=r"image-\d+\.faiss: it is \d+ bytes long, but was \d+ when it was "
                                                 r"written \(truncated or replaced\)"):
            coll.index("image")
        with pytest.raises(IndexFileError, match=r"text-\d+\.faiss: it holds audio vectors"):
            coll.index("text")
        assert set(coll.index_faults(full=True)) == {"image", "joint", "text", "audio"}
        with caplog.at_level(logging.WARNING):
            coll.sync_indexes(IndexSettings())
        assert sum("rebuilding" in r.getMessage() for r in caplog.records) == 4
        assert coll.index_faults(full=True) == {}
        for name, count in (("image", 40), ("audio", 40), ("text", 40), ("joint", 120)):
            assert coll.index(name).count() == count
        _, ids = coll.search("image", _vec(3), 1)
        assert coll.catalog.describe(ids[0])[int(ids[0][0])].kind == "image"
    with Collection.open(folder) as coll:
        assert coll.health() == []


def test_leftovers_of_killed_runs_are_listed_and_deleted_by_the_next_writer(folder):
    (folder / ".image-7.faiss.k3j2.tmp").write_bytes(b"half")
    (folder / ".manifest.json.4242.tmp").write_text("{")
    (folder / ".milvus-cm_x_1.npz.99.tmp.npz").write_bytes(b"x")
    (folder / "milvus-cm_old_ab.npz").write_bytes(b"x")
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "joint-99.faiss").write_bytes((folder / manifest["indexes"]["joint"]["file"]).read_bytes())
    expected = [".image-7.faiss.k3j2.tmp", ".manifest.json.4242.tmp", ".milvus-cm_x_1.npz.99.tmp.npz",
                "milvus-cm_old_ab.npz", "joint-99.faiss"]
    with Collection.open(folder) as coll:
        assert sorted(coll.leftovers()) == sorted(expected)
        assert coll.health() == []  # leftovers are untidy, not damage
        coll.sync_indexes(IndexSettings())  # nothing to publish: it still cleans up
        assert coll.leftovers() == []
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["catalog.sqlite", "manifest.json", *(e["file"] for e in manifest["indexes"].values())])


def test_milvus_indexes_swapped_in_the_manifest_are_refused_when_opened(tmp_path):
    pytest.importorskip("pymilvus")
    from crossmodal.storage.manifest import new_backend_spec, write_manifest

    folder = tmp_path / "coll"
    with Collection.create(folder, MODEL, new_backend_spec("milvus", "coll")) as coll:
        _add(coll, _items(0, 12))
        coll.sync_indexes(IndexSettings())
        manifest = coll.manifest
    image, audio = manifest["indexes"]["image"], manifest["indexes"]["audio"]
    image["collection"], audio["collection"] = audio["collection"], image["collection"]
    write_manifest(folder, manifest)
    with Collection.open(folder) as coll:
        with pytest.raises(IndexFileError, match=r"Milvus collection .* \(the image index\): it holds audio vectors"):
            coll.index("image")
        assert coll.index("text").count() == 12
        coll.sync_indexes(IndexSettings())  # a writer rebuilds what fails its checks
        assert coll.index("image").count() == 12 and coll.index_faults(full=True) == {}
        assert coll.leftovers() == []
