"""The HTTP API returns each near-duplicate group as one result with its copies (paths shown
from their root, like the result's own), and every file with ``collapse`` false."""

from __future__ import annotations

import io

import pytest
from support.copies import GROUPS, names, write_copies
from support.media import index_paths

from crossmodal.core.engine import Engine
from crossmodal.server import create_app
from crossmodal.settings import Settings


@pytest.fixture(scope="module")
def client(tmp_path_factory, starter):
    root = tmp_path_factory.mktemp("api-copies")
    media = write_copies(root / "media")
    index_paths(root / "coll", [media], Settings(), progress=False, aligner=starter)
    with Engine.open(root / "coll", aligner=starter) as engine:
        yield create_app(engine).test_client(), media


def test_search_returns_copies_with_paths_from_their_root(client):
    app, media = client
    response = app.post("/api/search", data={"image": (io.BytesIO((media / "three.png").read_bytes()), "q.png"),
                                              "targets": "images", "k": "4"}, content_type="multipart/form-data")
    assert response.status_code == 200, response.get_json()
    results = response.get_json()["results"]
    card = next(r for r in results if r["copies"])
    assert names([card["uri"], *(c["uri"] for c in card["copies"])]) == GROUPS["image"]
    assert all(c["uri"].startswith("media/") and {"id", "uri", "score"} <= c.keys() for c in card["copies"])
    assert sum(1 + len(r["copies"]) for r in results) == 4


def test_collapse_false_returns_every_file(client):
    app, _ = client
    response = app.post("/api/search", json={"text": "seven", "targets": ["audio"], "k": 8, "collapse": False})
    assert response.status_code == 200, response.get_json()
    results = response.get_json()["results"]
    assert all(r["copies"] == [] for r in results) and len(results) == 5
    response = app.post("/api/search", json={"text": "seven", "collapse": "sometimes"})
    assert response.status_code == 400 and "collapse" in response.get_json()["error"]


def test_openapi_describes_collapse_and_copies(client):
    app, _ = client
    doc = app.get("/api/openapi.json").get_json()
    body = doc["paths"]["/api/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "collapse" in body["properties"]
    assert "copies" in doc["components"]["schemas"]["Result"]["properties"]
