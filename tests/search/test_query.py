"""Queries are built and validated in one place: `query_from_fields`, whatever front end hands
it the raw fields (CLI options, a JSON body, a form)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crossmodal.errors import QueryError
from crossmodal.search.query import Query, QueryPart, parse_targets, parse_time, query_from_fields


def test_a_full_set_of_fields_becomes_one_query():
    q = query_from_fields({"text": "at night", "image": "cat.jpg", "weights": "1,2", "targets": ["images", "Audio"],
                           "k": "5", "user": "ana", "explain": "true", "fusion": "late", "merge": "rrf",
                           "filters": {"modalities": "image,audios", "uri_glob": "*/2024/*", "meta": {"label": 3},
                                       "after": "2026-01-01", "before": 1_800_000_000}})
    assert [(p.modality, p.text, p.path, p.weight) for p in q.parts] == [
        ("text", "at night", None, 1.0), ("image", None, Path("cat.jpg"), 2.0)]
    assert q.targets == ("image", "audio") and q.k == 5 and q.user == "ana" and q.explain is True
    assert (q.fusion, q.late_merge) == ("late", "rrf")
    assert q.filters.modalities == ("image", "audio") and q.filters.meta == {"label": "3"}
    assert q.filters.after == 1767225600.0 and q.filters.before == 1_800_000_000.0


def test_defaults_are_every_target_ten_results_and_no_user():
    q = query_from_fields({"text": "seven"})
    assert q.targets == ("text", "image", "audio") and q.k == 10 and q.user is None and not q.explain
    assert not q.filters.active


@pytest.mark.parametrize("fields, field", [
    ({}, "query"),
    ({"text": "   "}, "query"),
    ({"text": "x", "colour": "red"}, "body"),
    ({"text": "x", "k": 0}, "k"),
    ({"text": "x", "k": True}, "k"),
    ({"text": "x", "k": "many"}, "k"),
    ({"text": "x", "k": 101}, "k"),
    ({"text": "x", "weights": "1,2"}, "weights"),
    ({"text": "x", "weights": "-1"}, "weights"),
    ({"text": "x", "weights": [True]}, "weights"),
    ({"text": "x", "targets": "video"}, "targets"),
    ({"text": "x", "targets": ["joint", "image"]}, "targets"),
    ({"text": "x", "targets": [1]}, "targets"),
    ({"text": "x", "user": ""}, None),
    ({"text": "x", "user": "u" * 201}, "user"),
    ({"text": "x", "user": 7}, "user"),
    ({"text": "x", "fusion": "middle"}, "fusion"),
    ({"text": "x", "merge": "max"}, "merge"),
    ({"text": "x", "explain": "perhaps"}, "explain"),
    ({"text": "x", "filters": []}, "filters"),
    ({"text": "x", "filters": {"colour": "red"}}, "filters"),
    ({"text": "x", "filters": {"meta": {"a": [1]}}}, "filters.meta"),
    ({"text": "x", "filters": {"meta": {str(i): "v" for i in range(33)}}}, "filters.meta"),
    ({"text": "x", "filters": {"after": "last tuesday"}}, "filters.after"),
    ({"text": "x", "filters": {"modalities": ["video"]}}, "filters.modalities"),
    ({"text": 5}, "text"),
    ({"text": "x" * 2001}, "text"),
    ({"image": 5}, "image"),
])
def test_each_bad_field_is_named(fields, field):
    if field is None:  # an empty user means nobody, not an error
        assert query_from_fields(fields).user is None
        return
    with pytest.raises(QueryError) as error:
        query_from_fields(fields, max_k=100)
    assert str(error.value).startswith(f"{field}:"), str(error.value)


def test_targets_accept_singular_and_plural_in_any_case():
    assert parse_targets("Images, audio,TEXTS") == ("image", "audio", "text")
    assert parse_targets(["joint"]) == ("joint",)
    assert parse_targets("image,images") == ("image",)


def test_times_are_epoch_seconds_or_iso_dates():
    assert parse_time("1700000000", "after") == 1_700_000_000.0
    assert parse_time("2026-01-01T00:00:00+01:00", "after") == 1767222000.0
    assert parse_time(None, "after") is None


def test_a_query_part_holds_exactly_one_source():
    with pytest.raises(QueryError, match=r"parts\[0\]"):
        Query((QueryPart("image", text="x", path=Path("a.png")),))
    decoded = QueryPart("image", path=Path("a.png")).decoded(object(), "abc")
    assert Query((decoded,)).parts[0].key == "abc"
