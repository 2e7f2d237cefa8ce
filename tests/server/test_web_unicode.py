"""Unicode queries end to end over HTTP and in the web UI: a Chinese query typed into the page (and
posted to the real server as JSON and as a form) finds images of the right digit; right-to-left,
combining and astral-plane text is shown as it was written, in its own direction, and never cut
inside a character. The browser and the helpers are test_web_ui's; the collection is this
module's own, the same digits plus text files in several scripts."""

from __future__ import annotations

import json
import re
import unicodedata
import urllib.request
import uuid

import pytest
from server.test_web_ui import _results, _search, browser  # noqa: F401  (browser is a fixture used here)
from support.browser import serving
from support.media import copy_digits, index_paths

from crossmodal.aligner import load_aligner
from crossmodal.settings import Settings

pytestmark = pytest.mark.slow

HEBREW = "שבע ספרות בכתב יד"  # "seven handwritten digits"
ARABIC = "الرقم سبعة"  # "the number seven"
COMBINING = "nu\u0301mero siete, escrito a mano"  # NFD: u + combining acute
EMOJI = "🎉" * 250 + " seven"  # astral characters across the snippet's cut


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(url, folder): the digits of test_web_ui's collection and texts in several scripts, served."""
    root = tmp_path_factory.mktemp("unicode-ui")
    media = copy_digits(root / "media", 3, 3)
    texts = media / "texts"
    texts.mkdir()
    for name, text in (("hebrew", HEBREW), ("arabic", ARABIC), ("combining", COMBINING), ("emoji", EMOJI)):
        (texts / f"{name}.txt").write_text(text, encoding="utf-8")
    index_paths(root / "coll", [media], Settings(), progress=False, aligner=load_aligner("starter"))
    with serving(root / "coll") as url:
        yield url, root


def _post(url: str, body: bytes, content_type: str) -> dict:
    request = urllib.request.Request(f"{url}api/search", data=body, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read().decode("utf-8"))


def _digit(uri: str) -> str:
    return uri.rsplit("_", 1)[-1].split(".")[0]


@pytest.mark.parametrize("query", ["七", "数字七", "有人说七", "手寫的七", "数字７"])
def test_chinese_query_over_http_as_json(server, query):
    url, _ = server
    body = json.dumps({"text": query, "targets": "image", "k": 3}, ensure_ascii=False).encode("utf-8")
    found = _post(url, body, "application/json; charset=utf-8")["results"]
    assert [_digit(r["uri"]) for r in found] == ["7", "7", "7"], found


def test_chinese_query_over_http_as_a_form(server):
    url, _ = server
    boundary = uuid.uuid4().hex
    parts = [("text", "有人说七"), ("targets", "image"), ("k", "3")]
    body = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in parts)
    found = _post(url, f"{body}--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}")["results"]
    assert [_digit(r["uri"]) for r in found] == ["7", "7", "7"], found


def test_texts_come_back_as_written(server):
    """A text item's text is returned byte for byte (NFD stays NFD: it is the file's content)."""
    url, _ = server
    body = json.dumps({"text": "número siete", "targets": "text", "k": 10}, ensure_ascii=False).encode()
    texts = {r["text"] for r in _post(url, body, "application/json")["results"]}
    assert {HEBREW, ARABIC, COMBINING, EMOJI} <= texts
    assert unicodedata.is_normalized("NFD", COMBINING) and not unicodedata.is_normalized("NFC", COMBINING)


def test_typed_chinese_query_in_a_real_browser(server, browser):  # noqa: F811
    url, _ = server
    page = browser.new_page(bypass_csp=True)  # lets the test evaluate its own probes; the app needs no eval
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.uncheck("input[name=target][value=text]")
    page.uncheck("input[name=target][value=audio]")
    page.fill("#k", "3")
    for query, digit in (("有人说七", "7"), ("手寫的三", "3")):
        page.fill("#text", "")
        page.type("#text", query)  # key by key, as an input method commits characters
        assert page.input_value("#text") == query
        found = _search(page)
        metas = page.eval_on_selector_all("#results li .meta", "els => els.map(e => e.textContent)")
        assert len(found) == 3 and all(r["modality"] == "image" for r in found)
        assert all(re.search(rf"_{digit}\.png", m) for m in metas), (query, metas)
    assert not errors, errors


def test_right_to_left_and_astral_text_in_a_real_browser(server, browser):  # noqa: F811
    url, _ = server
    page = browser.new_page(bypass_csp=True)
    page.goto(url)
    page.fill("#text", HEBREW)
    assert page.eval_on_selector("#text", "e => getComputedStyle(e).direction") == "rtl"  # dir=auto
    page.uncheck("input[name=target][value=image]")
    page.uncheck("input[name=target][value=audio]")
    page.fill("#k", "10")
    _search(page)
    snippets = page.eval_on_selector_all(
        "#results li .snippet", "els => els.map(e => [e.textContent, getComputedStyle(e).direction])")
    shown = dict(snippets)
    assert shown[HEBREW] == "rtl" and shown[ARABIC] == "rtl" and shown[COMBINING] == "ltr"
    cut = next(text for text in shown if text.startswith("🎉"))
    assert cut.endswith("…") and len(cut) < len(EMOJI)
    assert set(cut[:-1]) == {"🎉"}  # whole characters only: half a surrogate pair would show as U+FFFD
