"""The SQLite catalog: dedupe by content, file links, orphan removal, vectors and generations."""

from __future__ import annotations

import numpy as np
import pytest

from crossmodal.errors import CatalogError
from crossmodal.items import NewItem, NewSegment
from crossmodal.storage.catalog import Catalog


def _vec(seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture()
def catalog(tmp_path):
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        yield cat


def _audio_item(h: str) -> NewItem:
    return NewItem(h, "audio", ("audio",), meta={"label": "3"},
                   segments=[NewSegment("audio", 0.0, 2.0, _vec(1)), NewSegment("audio", 1.0, 3.0, _vec(2))])


def test_items_segments_and_vectors_round_trip(catalog):
    with catalog.transaction():
        img = catalog.add_item(NewItem("h1", "image", ("image", "text"), {"caption": "a cat"},
                                       vectors={"image": _vec(0), "fused": _vec(5)},
                                       segments=[NewSegment("text", 0, 5, _vec(3), text="a cat")]))
        catalog.link_file("/x/cat.png", img, 10, 123, "sig", "/x")
        aud = catalog.add_item(_audio_item("h2"))
        catalog.link_file("/x/a.wav", aud, 20, 456, "sig2", "/x")
    ids, mat = catalog.vectors(["audio"])
    assert len(ids) == 2 and mat.shape == (2, 8)
    np.testing.assert_array_equal(mat[1], _vec(2))
    joint_ids, _ = catalog.vectors()
    assert len(joint_ids) == 5
    hits = catalog.describe(ids)
    assert [(hits[i].start, hits[i].end, hits[i].uri, hits[i].item_id) for i in ids] == [
        (0.0, 2.0, "/x/a.wav", aud), (1.0, 3.0, "/x/a.wav", aud)]
    item = catalog.item(img)
    assert item["modalities"] == ["image", "text"] and item["uris"] == ["/x/cat.png"]
    assert item["segments"][0]["text"] == "a cat"
    assert catalog.counts()["vectors_fused"] == 1


def test_identical_content_is_stored_once_and_dropped_with_its_last_file(catalog):
    with catalog.transaction():
        item = catalog.add_item(_audio_item("same"))
        catalog.link_file("/a.wav", item, 1, 1)
        catalog.link_file("/copy.wav", catalog.item_for_hash("same"), 1, 1)
    assert catalog.counts()["items"] == 1 and catalog.counts()["files"] == 2
    gen = catalog.generation
    with catalog.transaction():
        catalog.unlink_file("/a.wav")
    assert catalog.has_item(item) and catalog.generation == gen
    with catalog.transaction():
        catalog.unlink_file("/copy.wav")
    assert not catalog.has_item(item) and catalog.generation > gen
    assert catalog.vector_count() == 0 and catalog.counts()["segments"] == 0


def test_relinking_a_changed_file_drops_the_old_item_and_ids_are_never_reused(catalog):
    with catalog.transaction():
        old = catalog.add_item(_audio_item("v1"))
        catalog.link_file("/a.wav", old, 1, 1)
    max_before = catalog.max_vector_id()
    with catalog.transaction():
        new = catalog.add_item(_audio_item("v2"))
        catalog.link_file("/a.wav", new, 2, 2)
    assert not catalog.has_item(old) and new > old
    ids, _ = catalog.vectors()
    assert ids.min() > max_before
    ids_above, _ = catalog.vectors_above(max_before)
    assert list(ids_above) == list(ids)


def test_a_failed_transaction_leaves_nothing(catalog):
    with pytest.raises(RuntimeError):
        with catalog.transaction():
            catalog.add_item(_audio_item("x"))
            raise RuntimeError("killed")
    assert catalog.counts()["items"] == 0 and catalog.generation == 0


def test_a_file_that_is_not_a_database_is_refused_by_name(tmp_path):
    bad = tmp_path / "catalog.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CatalogError, match="catalog.sqlite: not a usable catalog"):
        Catalog(bad)


def test_metadata_filter_index_is_backfilled_for_older_catalogs(tmp_path):
    path = tmp_path / "catalog.sqlite"
    with Catalog(path) as cat:
        with cat.transaction():
            item = cat.add_item(_audio_item("old"))
            cat.link_file("/a.wav", item, 1, 1)
            cat.db.execute("DELETE FROM item_meta")
        assert len(cat.filter_vector_ids(meta={"label": "3"})) == 0
    with Catalog(path) as cat:
        assert len(cat.filter_vector_ids(meta={"label": "3"})) == 2
        assert len(cat.filter_vector_ids(meta={"label": "4"})) == 0


def test_stored_hashes_answers_for_many_hashes_at_once(catalog):
    with catalog.transaction():
        for i in range(0, 1200, 3):
            catalog.add_item(_audio_item(f"h{i}"))
    asked = [f"h{i}" for i in range(1200)] + ["h0", "h3"]  # more than one query's worth, with repeats
    assert catalog.stored_hashes(asked) == {f"h{i}" for i in range(0, 1200, 3)}
    assert catalog.stored_hashes([]) == set()


def test_generation_moves_once_per_transaction_and_on_every_change_outside_one(catalog):
    with catalog.transaction():
        for i in range(5):
            catalog.add_item(_audio_item(f"t{i}"))
    assert catalog.generation == 1
    with catalog.transaction():
        catalog.remove_item(catalog.item_for_hash("t0"))
    assert catalog.generation == 2
    catalog.add_item(_audio_item("autocommit-1"))
    catalog.add_item(_audio_item("autocommit-2"))
    assert catalog.generation == 4


def test_a_batch_of_items_gets_fresh_ids_even_after_the_newest_was_deleted(catalog):
    with catalog.transaction():
        first = catalog.add_items([_audio_item("a"), _audio_item("b")])
    top_vector = catalog.max_vector_id()
    with catalog.transaction():
        catalog.remove_item(first[1])
    with catalog.transaction():
        image = NewItem("c", "image", ("image",), vectors={"image": _vec(7)})
        later = catalog.add_items([image, _audio_item("d")])
    assert first[0] < first[1] < later[0] < later[1]
    ids, mat = catalog.vectors()
    assert ids.min() > 0 and sorted(ids) == list(ids) and ids[-3:].min() > top_vector
    hits = catalog.describe(ids)
    assert [(hits[i].item_id, hits[i].kind) for i in ids] == [
        (first[0], "audio"), (first[0], "audio"), (later[0], "image"), (later[1], "audio"), (later[1], "audio")]
    np.testing.assert_array_equal(mat[2], _vec(7))
    assert [s["start"] for s in catalog.item(later[1])["segments"]] == [0.0, 1.0]
