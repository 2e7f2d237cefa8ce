"""`GET /api/recommend` and `GET /api/items/<id>/similar` through the real Flask app on the demo
corpus with real feedback: the browser's own user (another user's list needs the token), an
unknown user gets popular items (not an error), an unknown item 404, a bad field 400 naming it."""

from __future__ import annotations

import shutil

import pytest

from crossmodal.core import Engine
from crossmodal.server import create_app
from crossmodal.settings import Settings


@pytest.fixture(scope="module")
def engine(demo_collection, tmp_path_factory):
    folder = shutil.copytree(demo_collection, tmp_path_factory.mktemp("rec-api") / "coll")
    with Engine.open(folder, settings=Settings()) as eng:
        yield eng


@pytest.fixture()
def client(engine):
    return create_app(engine).test_client()


def label_items(engine: Engine, label: str, modality: str) -> list[int]:
    return sorted(i for i, f in engine.collection.catalog.filter_fields().items()
                  if f["meta"].get("label") == label and f["modality"] == modality)


def test_recommend_for_the_browsers_user_and_for_a_named_one(client, engine):
    me = client.get("/api/me").get_json()["user"]
    liked = label_items(engine, "6", "image")[:3]
    for item in liked:
        assert client.post("/api/feedback", json={"item": item, "event": "like"}).status_code == 201
    body = client.get("/api/recommend?k=8&explain=true&method=content").get_json()
    assert body["user"] == me and body["used"] == "content" and len(body["results"]) == 8
    assert [r["label"] for r in body["results"]].count("6") >= 6
    assert not set(liked) & {r["id"] for r in body["results"]}
    assert all("sources" in r for r in body["results"])
    for r in body["results"]:  # each says which of the liked images it is like, by id and file name
        first = r["explanation"][0]
        assert first["kind"] == "liked" and first["item"] in liked
        assert first["text"] == f"because you liked #{first['item']} {first['name']}"
        assert first["name"].endswith("_6.png") and "/" not in first["name"]
    assert all(not r["uri"].startswith("/") for r in body["results"])  # paths shown from their root
    audio = client.get("/api/recommend?k=3&targets=audio&method=content").get_json()
    assert {r["modality"] for r in audio["results"]} == {"audio"}

    stranger = create_app(engine).test_client()  # another browser: its own user only
    assert stranger.get(f"/api/recommend?user={me}").status_code == 403
    own = stranger.get("/api/recommend?k=4").get_json()
    assert own["used"] == "popular" and own["results"][0]["id"] in liked  # what others liked


def test_unknown_user_gets_popular_and_bad_fields_get_400(client):
    body = client.get("/api/recommend?k=5").get_json()  # a browser with no feedback yet
    assert body["used"] == "popular" and body["history"] == 0 and len(body["results"]) == 5
    for query, field in (("k=0", "k"), ("k=abc", "k"), ("k=100000", "k"), ("method=magic", "method"),
                         ("targets=joint", "targets"), ("include_rated=perhaps", "include_rated")):
        r = client.get(f"/api/recommend?{query}")
        assert r.status_code == 400 and field in r.get_json()["error"], query


def test_similar_items_and_errors(client, engine):
    item = label_items(engine, "4", "audio")[0]
    body = client.get(f"/api/items/{item}/similar?k=6").get_json()
    ids = [r["id"] for r in body["results"]]
    assert item not in ids and len(ids) == 6 and [r["label"] for r in body["results"]].count("4") >= 5
    explained = client.get(f"/api/items/{item}/similar?k=2&explain=true&targets=text").get_json()
    assert "plan" in explained and {r["modality"] for r in explained["results"]} == {"text"}
    assert client.get("/api/items/99999999/similar").status_code == 404
    r = client.get(f"/api/items/{item}/similar?k=-1")
    assert r.status_code == 400 and "k" in r.get_json()["error"]
