"""The HTTP API through Flask's test client (every route and error status), and a real waitress
server under concurrent and hostile requests."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image
from support.media import copy_digits, corpus_files, index_paths

from crossmodal.aligner import load_aligner
from crossmodal.core.engine import Engine
from crossmodal.errors import (
    BusyError,
    CatalogError,
    CheckpointError,
    DecodeError,
    InputError,
    MediaTypeError,
    NotFoundError,
    QueryError,
    TooLargeError,
)
from crossmodal.server import create_app
from crossmodal.server.app import status_of
from crossmodal.settings import ServerSettings, Settings


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("http")
    media = copy_digits(root / "media", 2, 2)
    (media / "notes.txt").write_text("Someone saying seven, twice.\n")
    index_paths(root / "coll", [media], Settings(), progress=False, aligner=load_aligner("starter"))
    return root / "coll"


@pytest.fixture(scope="module")
def engine(collection):
    with Engine.open(collection) as eng:
        yield eng


@pytest.fixture()
def client(engine):
    return create_app(engine).test_client()


def _ids_by_modality(engine: Engine) -> dict[str, int]:
    out = {}
    for state in engine.collection.catalog.file_states().values():
        modality = engine.item(state.item_id)["modality"]
        out.setdefault(modality, state.item_id)
    return out


def _post_files(client, **files):
    data = {}
    for field, value in files.items():
        if isinstance(value, Path):
            data[field] = (io.BytesIO(value.read_bytes()), value.name)
        elif isinstance(value, bytes):
            data[field] = (io.BytesIO(value), f"{field}.bin")
        else:
            data[field] = value
    return client.post("/api/search", data=data, content_type="multipart/form-data")


def test_health_page_and_openapi_matches_the_routes(client, engine):
    health = client.get("/api/health").get_json()
    assert health["status"] == "ok" and health["items"] == engine.collection.catalog.counts()["items"]
    page = client.get("/")
    assert page.status_code == 200 and b'id="search-form"' in page.data
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    with client.get("/static/app.js") as r:
        assert r.status_code == 200 and r.mimetype == "text/javascript"
    spec = client.get("/api/openapi.json").get_json()
    routes = set()
    for rule in client.application.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                routes.add((path, method.lower()))
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert routes == documented


def test_search_by_json_text_and_by_multipart_parts(client):
    r = client.post("/api/search", json={"text": "someone saying seven", "k": 2, "targets": ["audio"]})
    assert r.status_code == 200
    results = r.get_json()["results"]
    assert len(results) == 2 and all(x["modality"] == "audio" and x["label"] is None for x in results)
    assert all(set(x) >= {"id", "modality", "uri", "score", "start", "end"} for x in results)
    assert all(Path(x["uri"]).name.startswith("7_") for x in results)
    image = corpus_files("image", "4", 3)[2]
    audio = corpus_files("audio", "4", 3)[2]
    r = _post_files(client, image=image, audio=audio, text="four", k="2", targets="image",
                    weights="1,1,1", explain="true")
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert [p["modality"] for p in body["plan"]["parts"]] == ["text", "image", "audio"]
    assert all(Path(x["uri"]).stem.endswith("_4") for x in body["results"])
    assert len(body["results"][0]["explanation"]["parts"]) == 3


@pytest.mark.parametrize("payload, fragment", [
    ({}, "query: give text"),
    ({"text": "x", "k": 0}, "k:"),
    ({"text": "x", "k": "many"}, "k:"),
    ({"text": "x", "k": 2.5}, "k:"),
    ({"text": "x", "targets": ["video"]}, "targets"),
    ({"text": "x", "weights": [1, 2]}, "weights"),
    ({"text": "x", "colour": "red"}, "unknown field"),
    ({"text": "x", "filters": {"meta": [1]}}, "filters.meta"),
    ({"text": "x", "fusion": "sideways"}, "fusion"),
    ({"text": 5}, "text: expected a string"),
    ({"text": "x", "user": ""}, None),
])
def test_bad_fields_are_400_with_the_field_named(client, payload, fragment):
    r = client.post("/api/search", json=payload)
    if fragment is None:
        assert r.status_code == 200
        return
    assert r.status_code == 400, r.get_json()
    assert fragment in r.get_json()["error"]


def test_bad_uploads_get_415_and_422_and_no_paths_leak(client, tmp_path):
    r = _post_files(client, image=b"%PDF-1.4 not an image at all")
    assert r.status_code == 415 and r.get_json()["error"].startswith("image: expected image")
    r = _post_files(client, audio=corpus_files("image", "1", 1)[0])
    assert r.status_code == 415 and "got image data" in r.get_json()["error"]
    png = corpus_files("image", "1", 1)[0].read_bytes()
    r = _post_files(client, image=png[:60])
    assert r.status_code == 422 and r.get_json()["error"].startswith("image: cannot decode")
    r = _post_files(client, audio=b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\xff" * 40)
    error = r.get_json()["error"]
    assert r.status_code == 422 and "audio: cannot decode" in error
    assert tempfile.gettempdir() not in error and "crossmodal-upload" not in error
    r = _post_files(client, image=b"")
    assert r.status_code == 400
    r = client.post("/api/search", data="not json", content_type="application/json")
    assert r.status_code == 400


def test_oversized_upload_is_413_and_the_server_keeps_serving(engine):
    small = Settings(server=ServerSettings(max_upload_mb=0.05))
    client = create_app(engine, small).test_client()
    big = io.BytesIO()
    Image.effect_noise((400, 400), 60).save(big, format="PNG")
    r = client.post("/api/search", data={"image": (io.BytesIO(big.getvalue()), "big.png")},
                    content_type="multipart/form-data")
    assert r.status_code == 413 and "larger than" in r.get_json()["error"]
    assert client.post("/api/search", json={"text": "one"}).status_code == 200


def test_items_media_thumbnails_and_content_types(client, engine):
    ids = _ids_by_modality(engine)
    item = client.get(f"/api/items/{ids['image']}").get_json()
    assert item["modality"] == "image" and "content_hash" not in item
    with client.get(f"/api/items/{ids['image']}/media") as r:
        assert r.status_code == 200 and r.mimetype == "image/png"
    with client.get(f"/api/items/{ids['audio']}/media", headers={"Range": "bytes=0-99"}) as r:
        assert r.status_code == 206 and r.mimetype == "audio/wav" and len(r.data) == 100
    r = client.get(f"/api/items/{ids['text']}/media")
    assert r.status_code == 200 and r.mimetype == "text/plain" and b"seven" in r.data
    r = client.get(f"/api/items/{ids['image']}/thumbnail?size=64")
    assert r.status_code == 200 and r.mimetype == "image/png"
    assert Image.open(io.BytesIO(r.data)).size[0] <= 128
    assert client.get(f"/api/items/{ids['audio']}/thumbnail").status_code == 404
    assert client.get(f"/api/items/{ids['image']}/thumbnail?size=99999").status_code == 400
    assert client.get("/api/items/424242").status_code == 404
    assert client.get("/api/items/424242/media").get_json()["error"] == "no item 424242"


@pytest.mark.parametrize("path", [
    "/api/items/..%2f..%2fetc%2fpasswd/media", "/api/items/-1/media", "/api/items/1%2e%2e/media",
    "/static/../catalog.sqlite", "/static/%2e%2e/%2e%2e/README.md", "/api/items/1/media/../../../etc/passwd",
    "/api/media?path=/etc/passwd", "/api/nothing", "/api/items/99999999999999999999",
    "/api/items/99999999999999999999/media", "/api/items/0/thumbnail",
])
def test_path_traversal_finds_nothing(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert r.is_json and "root:" not in r.get_data(as_text=True)


def test_feedback_changes_the_users_next_search_only(client, engine):
    me = client.get("/api/me").get_json()["user"]
    assert me.startswith("u-")
    ids = [x["id"] for x in client.post("/api/search", json={"text": "the digit nine", "k": 2,
                                                             "targets": ["image"]}).get_json()["results"]]
    r = client.post("/api/feedback", json={"item": ids[0], "event": "like"})
    assert r.status_code == 201 and r.get_json()["event"] == "like" and r.get_json()["user"] == me
    body = client.post("/api/search", json={"text": "one", "explain": True}).get_json()
    assert body["plan"]["user"] == me and body["plan"]["user_events"] == 1 and body["plan"]["beta"] > 0
    stranger = client.application.test_client()
    assert stranger.post("/api/search", json={"text": "one", "explain": True}).get_json()["plan"]["beta"] == 0
    assert stranger.get(f"/api/users/{me}/feedback").status_code == 403
    assert stranger.delete(f"/api/users/{me}/feedback").status_code == 403
    assert stranger.post("/api/search", json={"text": "one", "user": me}).status_code == 403
    assert stranger.post("/api/feedback", json={"user": me, "item": ids[0], "event": "dislike"}).status_code == 403
    assert client.get(f"/api/users/{me}/feedback").get_json()["events"][0]["item"] == ids[0]
    assert client.delete(f"/api/users/{me}/feedback").get_json()["deleted"] == 1
    assert client.post("/api/feedback", json={"item": ids[0], "event": "love"}).status_code == 400
    assert client.post("/api/feedback", json={"item": 999999, "event": "like"}).status_code == 404
    assert client.post("/api/feedback", json={"event": "like"}).status_code == 400
    assert client.post("/api/feedback", data="x").status_code == 400
    assert client.get("/api/feedback").status_code == 405


def test_uploads_are_removed_after_each_request(client):
    before = set(Path(tempfile.gettempdir()).glob("crossmodal-upload-*"))
    _post_files(client, image=corpus_files("image", "3", 1)[0])
    _post_files(client, image=b"garbage")
    assert set(Path(tempfile.gettempdir()).glob("crossmodal-upload-*")) == before


@pytest.mark.slow
def test_real_server_concurrent_and_hostile_requests_then_sigterm(collection, tmp_path):
    (tmp_path / "crossmodal.toml").write_text("[server]\nmax_upload_mb = 1.0\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CROSSMODAL_CONFIG": str(tmp_path / "crossmodal.toml")}
    with subprocess.Popen([sys.executable, "-m", "crossmodal", "serve", "--index", str(collection),
                           "--port", "0", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env) as proc:
        _exercise_server(proc)


def _exercise_server(proc: subprocess.Popen) -> None:
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://\S+/", line).group(0)

        def post(path: str, body: bytes, ctype: str) -> tuple[int, dict]:
            req = urllib.request.Request(url + path.lstrip("/"), data=body, headers={"Content-Type": ctype})
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    return resp.status, json.loads(resp.read())
            except urllib.error.HTTPError as err:
                return err.code, json.loads(err.read())

        def search(word: str) -> tuple[int, dict]:
            return post("api/search", json.dumps({"text": f"someone saying {word}", "k": 1,
                                                  "targets": ["audio"]}).encode(), "application/json")

        words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"] * 3
        with ThreadPoolExecutor(max_workers=12) as pool:
            answers = list(pool.map(search, words))
        for word, (status, body) in zip(words, answers):
            num = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"].index(word)
            assert status == 200 and Path(body["results"][0]["uri"]).name.startswith(f"{num}_")
        assert post("api/search", b"{broken", "application/json")[0] == 400
        assert post("api/search", b"--x\r\nnonsense", "multipart/form-data; boundary=x")[0] == 400
        assert post("api/search", os.urandom(4000), "application/octet-stream")[0] == 400
        boundary = "b0undary"
        big = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n"
               f"Content-Type: image/png\r\n\r\n").encode() + os.urandom(2 << 20) + f"\r\n--{boundary}--\r\n".encode()
        status, body = post("api/search", big, f"multipart/form-data; boundary={boundary}")
        assert status == 413 and "larger than" in body["error"]
        assert search("seven")[0] == 200
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        assert "stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("error, status", [
    (QueryError("k: bad"), 400), (InputError("body: bad"), 400), (TooLargeError("image: big"), 413),
    (MediaTypeError("audio: not audio"), 415), (NotFoundError("no item 9"), 404), (DecodeError("x.png", "bad"), 422),
    (BusyError("busy"), 409), (CatalogError("/srv/c/catalog.sqlite: corrupt"), 503), (CheckpointError("bad"), 500),
])
def test_each_error_class_becomes_its_status_and_server_faults_hide_their_detail(engine, error, status):
    assert status_of(error) == status
    app = create_app(engine)

    @app.get("/api/_raise")
    def _raise():
        raise error

    response = app.test_client().get("/api/_raise")
    assert response.status_code == status
    message = response.get_json()["error"]
    assert (message == str(error)) == (status < 500) and "/srv/" not in message
