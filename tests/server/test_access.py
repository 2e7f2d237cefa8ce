"""Who may use a server and as whom, against a real server process and real files: the token
(Bearer header or a browser login), the Host check, signed per-browser users, paths shown
relative to their folder, and files that left the collection's folders refused."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
from support.media import corpus_files, index_paths

from crossmodal.core import Engine
from crossmodal.errors import ConfigError
from crossmodal.server import create_app
from crossmodal.server.run import serve
from crossmodal.settings import ServerSettings, Settings

TOKEN = "a-long-token-nobody-guesses-0123456789"


@pytest.fixture(scope="module")
def served(tmp_path_factory, starter):
    """A real server with a token over a small collection, and the folders it was built from."""
    root = tmp_path_factory.mktemp("access")
    photos = root / "photos"
    photos.mkdir()
    for path in corpus_files("image", "4", 2) + corpus_files("audio", "4", 1):
        shutil.copy(path, photos / path.name)
    index_paths(root / "coll", [photos], progress=False, aligner=starter)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CROSSMODAL_TOKEN": TOKEN}
    with subprocess.Popen([sys.executable, "-m", "crossmodal", "serve", "--collection", str(root / "coll"),
                           "--port", "0", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env) as proc:
        try:
            port = int(re.search(r":(\d+)/", proc.stdout.readline()).group(1))
            yield port, root
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0


def _request(port: int, method: str, path: str, body: dict | None = None, token: str | None = None,
             host: str | None = None, cookie: str | None = None) -> tuple[int, dict, http.client.HTTPMessage]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Host": host or f"127.0.0.1:{port}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if cookie:
        headers["Cookie"] = cookie
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = {"text": raw.decode("utf-8", "replace")}
    return response.status, payload, response.headers


def _login(port: int, token: str) -> tuple[int, list[str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/login", body=f"token={token}",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        response.read()
        return response.status, response.headers.get_all("Set-Cookie") or []
    finally:
        conn.close()


def test_the_api_needs_the_token(served):
    port, _ = served
    status, body, headers = _request(port, "POST", "/api/search", {"text": "four"})
    assert status == 401 and "token" in body["error"] and headers["WWW-Authenticate"].startswith("Bearer")
    assert _request(port, "GET", "/api/health", token="wrong")[0] == 401
    status, body, _ = _request(port, "POST", "/api/search", {"text": "four", "k": 2}, token=TOKEN)
    assert status == 200 and len(body["results"]) == 2


def test_a_browser_logs_in_with_the_token_and_gets_a_strict_session(served):
    port, _ = served
    status, page, _ = _request(port, "GET", "/")
    assert status == 401 and 'id="login-form"' in page["text"]
    assert _login(port, "wrong")[0] == 401
    status, cookies = _login(port, TOKEN)
    session = next(c for c in cookies if c.startswith("cm_session="))
    assert status == 303 and "HttpOnly" in session and "SameSite=Strict" in session
    jar = "; ".join(c.split(";", 1)[0] for c in cookies)
    assert _request(port, "GET", "/", cookie=jar)[0] == 200
    status, body, _ = _request(port, "POST", "/api/search", {"text": "four"}, cookie=jar)
    assert status == 200 and body["results"]
    forged = re.sub(r"cm_session=s\.(\d+)\.", lambda m: f"cm_session=s.{int(m.group(1)) + 999}.", jar)
    assert _request(port, "POST", "/api/search", {"text": "four"}, cookie=forged)[0] == 401


def test_only_the_token_acts_as_another_user(served):
    port, _ = served
    status, me, headers = _request(port, "GET", "/api/me", token=TOKEN)
    ana = me["user"]
    jar = headers["Set-Cookie"].split(";", 1)[0]
    item = _request(port, "POST", "/api/search", {"text": "four", "k": 1}, token=TOKEN, cookie=jar)[1]["results"][0]
    assert _request(port, "POST", "/api/feedback", {"item": item["id"], "event": "like"}, token=TOKEN,
                    cookie=jar)[0] == 201
    # Another browser (its own signed cookie) cannot read or change ana's history without the token...
    status, other, headers = _request(port, "GET", "/api/me", token=TOKEN)
    other_jar = headers["Set-Cookie"].split(";", 1)[0]
    assert other["user"] != ana
    # ...here it holds the token, so it may; a forged user cookie is simply a new stranger.
    assert _request(port, "GET", f"/api/users/{ana}/feedback", token=TOKEN, cookie=other_jar)[1]["events"]
    forged = f"cm_user=u.{ana}.0123456789abcdef0123456789abcdef"
    status, body, _ = _request(port, "GET", "/api/me", token=TOKEN, cookie=forged)
    assert body["user"] != ana


def test_requests_for_another_host_name_are_refused(served):
    port, _ = served
    status, body, _ = _request(port, "GET", "/api/health", token=TOKEN, host=f"rebinding.example:{port}")
    assert status == 403 and "allowed_hosts" in body["error"]
    assert _request(port, "GET", "/api/health", token=TOKEN, host=f"localhost:{port}")[0] == 200


def test_paths_are_shown_from_their_folder_and_in_full_only_with_the_token(starter, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(corpus_files("image", "4", 1)[0], folder / "four.png")
    index_paths(tmp_path / "c", [folder], progress=False, aligner=starter)
    settings = Settings(server=ServerSettings(token=TOKEN))
    with Engine.open(tmp_path / "c", settings=settings) as engine:
        client = create_app(engine).test_client()
        hit = client.post("/api/search", json={"text": "four", "k": 1},
                          headers={"Authorization": f"Bearer {TOKEN}"}).get_json()["results"][0]
        assert hit["uri"] == str(folder / "four.png")
        client.post("/login", data={"token": TOKEN})
        hit = client.post("/api/search", json={"text": "four", "k": 1}).get_json()["results"][0]
        assert hit["uri"] == "photos/four.png"
        assert client.get(f"/api/items/{hit['id']}").get_json()["uris"] == ["photos/four.png"]


def test_a_non_loopback_address_needs_a_token(demo_collection, monkeypatch):
    monkeypatch.delenv("CROSSMODAL_TOKEN", raising=False)
    with Engine.open(demo_collection, settings=Settings()) as engine:
        with pytest.raises(ConfigError, match="--insecure-no-token"):
            serve(engine, engine.settings, host="0.0.0.0", port=0)


def test_files_that_left_the_collections_folders_are_never_served(starter, tmp_path):
    photos, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    photos.mkdir()
    elsewhere.mkdir()
    shutil.copy(corpus_files("image", "1", 1)[0], elsewhere / "secret.png")
    secret = (elsewhere / "secret.png").read_bytes()
    shutil.copy(corpus_files("image", "4", 1)[0], photos / "four.png")
    shutil.copy(corpus_files("image", "7", 1)[0], photos / "seven.png")
    (photos / "link.png").symlink_to(elsewhere / "secret.png")
    (photos / "list.jsonl").write_text(json.dumps({"modality": "image", "path": "../elsewhere/secret.png"}) + "\n")
    report = index_paths(tmp_path / "c", [photos], progress=False, aligner=starter)
    reasons = {os.path.basename(s.source.split(":")[0]): s.reason for s in report.skipped}
    assert "outside the collection's folders" in reasons["link.png"]
    assert "outside the item list's folder" in reasons["list.jsonl"]
    assert report.added == 2
    with Engine.open(tmp_path / "c", settings=Settings()) as engine:
        client = create_app(engine).test_client()
        ids = {engine.item(i)["uris"][0].rsplit("/", 1)[1]: i for i in (1, 2)}
        with client.get(f"/api/items/{ids['four.png']}/media") as r:
            assert r.status_code == 200 and r.data == (photos / "four.png").read_bytes()
        (photos / "seven.png").unlink()
        (photos / "seven.png").symlink_to(elsewhere / "secret.png")  # swapped after indexing
        for route in ("media", "thumbnail"):
            with client.get(f"/api/items/{ids['seven.png']}/{route}") as r:
                assert r.status_code == 404 and secret not in r.data
    # Asked for explicitly, a link or a list may reach elsewhere, and what it names is served.
    explicit = index_paths(tmp_path / "c2", [photos / "list.jsonl"], progress=False, aligner=starter)
    assert explicit.skipped == [] and explicit.added == 1
    followed = index_paths(tmp_path / "c3", [photos], progress=False, aligner=starter, follow_symlinks=True)
    assert not any(s.source.endswith("link.png") for s in followed.skipped)
    with Engine.open(tmp_path / "c2", settings=Settings()) as engine:
        media = engine.media(1)
        handle, _ = media.open()
        with handle:
            assert handle.read() == secret


def test_hostile_json_is_a_400_not_a_500(served):
    port, _ = served
    deep = "[" * 5000 + "]" * 5000
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/api/search", body=deep, headers={"Content-Type": "application/json",
                                                               "Authorization": f"Bearer {TOKEN}"})
        response = conn.getresponse()
        assert response.status == 400 and b"nested deeper" in response.read()
    finally:
        conn.close()
    for body, field in (({"text": "x", "targets": [1, 2]}, "targets"),
                        ({"text": "x", "filters": {"meta": {str(i): "v" for i in range(1000)}}}, "filters.meta"),
                        ({"item": {"a": [1]}, "event": "like"}, "item")):
        route = "/api/feedback" if "item" in body else "/api/search"
        status, payload, _ = _request(port, "POST", route, body, token=TOKEN)
        assert status == 400 and payload["error"].startswith(field), (body, payload)
    big = {"text": "x" * 100_000}
    assert _request(port, "POST", "/api/search", big, token=TOKEN)[0] == 413
    assert _request(port, "GET", "/api/health", token=TOKEN)[0] == 200
