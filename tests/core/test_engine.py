"""The core API: one `Engine` per collection is the door for every operation, loads the model
only when an operation needs it, and raises crossmodal errors that name what is wrong."""

from __future__ import annotations

import shutil

import pytest
from support.media import corpus_files

from crossmodal.core import Engine, Query, QueryPart, query_from_fields
from crossmodal.errors import (
    BusyError,
    CheckpointError,
    CollectionError,
    DecodeError,
    MediaTypeError,
    NotFoundError,
    QueryError,
)
from crossmodal.settings import Settings
from crossmodal.storage.locks import writer_lock


@pytest.fixture()
def small(tmp_path, starter):
    """A collection of a few images and recordings, which the test may change."""
    media = tmp_path / "media"
    media.mkdir()
    for path in corpus_files("image", "3", 2) + corpus_files("audio", "7", 2):
        shutil.copy(path, media / path.name)
    (media / "note.txt").write_text("The digit three, written by hand.\n")
    with Engine.open(tmp_path / "coll", create=True, settings=Settings(), aligner=starter) as engine:
        report = engine.index([media], progress=False)
    assert report.added == 5
    return tmp_path / "coll", media


def test_a_missing_collection_says_how_to_build_it(tmp_path):
    with pytest.raises(CollectionError, match=r"no collection at .*crossmodal index PATH --collection nowhere"):
        Engine.open(tmp_path / "nowhere", settings=Settings())


def test_created_collections_are_bound_to_their_model(small, tmp_path):
    folder, _ = small
    with Engine.open(folder, settings=Settings()) as engine:
        assert engine.model.model_id.startswith("starter-digits@") and engine.name == "coll"
        assert engine.counts()["items"] == 5
    (tmp_path / "other").mkdir()
    with pytest.raises(CheckpointError, match="other: not an aligner checkpoint"):
        Engine.open(folder, settings=Settings(), model=str(tmp_path / "other"))


def test_people_and_items_need_no_model(small):
    folder, _ = small
    with Engine.open(folder, settings=Settings()) as engine:
        item = engine.item(1)
        assert item is not None and engine.feedback("ana", str(item["id"]), "like") > 0
        assert [e["event"] for e in engine.export_user("ana")["events"]] == ["like"]
        assert engine.health()["items"] == 5 and engine.delete_user("ana") == 1
        assert not engine.model_loaded
        engine.search(query_from_fields({"text": "three", "k": 1}))
        assert engine.model_loaded


def test_feedback_names_the_bad_field(small):
    folder, _ = small
    with Engine.open(folder, settings=Settings()) as engine:
        with pytest.raises(QueryError, match="^event:"):
            engine.feedback("ana", 1, "love")
        with pytest.raises(QueryError, match="^user:"):
            engine.feedback(" ", 1, "like")
        with pytest.raises(QueryError, match="^item:"):
            engine.feedback("ana", "first", "like")
        with pytest.raises(NotFoundError, match="no item 999"):
            engine.feedback("ana", 999, "like")


def test_media_and_thumbnails_come_from_catalogued_files_only(small):
    folder, media = small
    with Engine.open(folder, settings=Settings()) as engine:
        by_modality = {engine.item(i)["modality"]: i for i in range(1, 6)}
        text = engine.media(by_modality["text"])
        assert text.text.startswith("The digit three") and text.path is None
        image = engine.media(by_modality["image"])
        assert image.mime_type == "image/png" and image.path.parent == media
        png = engine.thumbnail(by_modality["image"], "64")
        assert png.startswith(b"\x89PNG")
        with pytest.raises(QueryError, match="^size:"):
            engine.thumbnail(by_modality["image"], 5000)
        with pytest.raises(NotFoundError, match="only images have thumbnails"):
            engine.thumbnail(by_modality["audio"])
        with pytest.raises(NotFoundError):
            engine.media(12345)


def test_query_files_are_checked_by_content_and_errors_name_only_the_file(small, tmp_path):
    folder, media = small
    wav = corpus_files("audio", "7", 1)[0]
    with Engine.open(folder, settings=Settings()) as engine:
        with pytest.raises(MediaTypeError, match=r"^image: expected image .*got audio data"):
            engine.search(Query((QueryPart("image", path=wav),)))
        broken = tmp_path / "broken.png"
        broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
        with pytest.raises(DecodeError) as error:
            engine.search(Query((QueryPart("image", path=broken),)))
        assert str(error.value).startswith("broken.png: cannot decode") and str(tmp_path) not in str(error.value)
        hits = engine.search(Query((QueryPart("audio", path=wav),), targets=("image",), k=1)).results
        assert hits[0].label is None and hits[0].modality == "image"


def test_a_rebuild_waits_for_no_one_and_never_erases_a_running_writer(small):
    folder, media = small
    with writer_lock(folder):
        with pytest.raises(BusyError, match="being written by another process"):
            Engine.open(folder, settings=Settings(), rebuild=True)
        with Engine.open(folder, settings=Settings()) as engine, pytest.raises(BusyError):
            engine.index([media], progress=False)
    with Engine.open(folder, settings=Settings()) as engine:
        assert engine.counts()["items"] == 5
    with Engine.open(folder, settings=Settings(), rebuild=True) as engine:
        assert engine.counts()["items"] == 0
