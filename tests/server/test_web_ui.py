"""The web UI end to end in headless Chromium (Debian's `chromium`, driven by Playwright): the
real server on a free loopback port, a typed query, an uploaded image and audio clip, a
recording from a fake microphone that plays a spoken digit, and a like that changes the next
results."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from support.browser import INSTALL_HINT, serving
from support.browser import chromium_path as _chromium
from support.media import copy_digits, corpus_files, index_paths
from support.tools import require

from crossmodal.aligner import load_aligner
from crossmodal.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui")
    media = copy_digits(root / "media", 3, 3)
    two = sorted((media / "images").glob("*_2.png"))[0]
    Image.open(two).resize((56, 56)).save(media / "images" / f"copy_of_{two.name}")  # a near-duplicate
    index_paths(root / "coll", [media], Settings(), progress=False, aligner=load_aligner("starter"))
    with serving(root / "coll") as url:
        yield url, root


@pytest.fixture(scope="module")
def browser(server):
    chromium = _chromium()
    require(chromium is not None, INSTALL_HINT)
    playwright_api = pytest.importorskip("playwright.sync_api", reason=INSTALL_HINT)
    _, root = server
    wave, rate = sf.read(corpus_files("audio", "6", 4)[3], dtype="float32")
    import soxr

    voice = soxr.resample(wave, rate, 48000)
    pad = np.zeros(24000, dtype=np.float32)
    mic = root / "mic.wav"
    sf.write(mic, np.concatenate([pad, voice, pad]), 48000, subtype="PCM_16")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=[
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic}", "--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def _results(page) -> list[dict]:
    return page.eval_on_selector_all(
        "#results li", "els => els.map(e => ({id: e.dataset.id, label: e.dataset.label, "
        "modality: e.dataset.modality, score: e.querySelector('.score').textContent}))")


def _search(page) -> list[dict]:
    page.evaluate("document.getElementById('summary').textContent = ''")
    page.click("#search")
    page.wait_for_function("/result|No results/.test(document.getElementById('summary').textContent)"
                           " || document.getElementById('message').textContent")
    message = page.text_content("#message")
    assert not message, message
    return _results(page)


def _label_of(result: dict) -> str:
    return result["label"]


def test_search_upload_record_and_like_in_a_real_browser(server, browser):
    url, root = server
    page = browser.new_page(bypass_csp=True)  # lets the test evaluate its own probes; the app needs no eval
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    assert page.title().startswith("crossmodal")

    page.uncheck("input[name=target][value=text]")
    page.fill("#k", "3")
    page.fill("#text", "someone saying four")
    found = _search(page)
    assert len(found) == 3 and all(r["modality"] in ("image", "audio") for r in found)
    page_uris = page.eval_on_selector_all("#results li .meta", "els => els.map(e => e.textContent)")
    assert all(re.search(r"(^|_)4(_|\.|$)", t.split("·")[-1].strip()) for t in page_uris), page_uris

    page.fill("#text", "")
    page.set_input_files("#image", str(corpus_files("image", "2", 5)[4]))
    page.uncheck("input[name=target][value=audio]")
    found = _search(page)
    assert page.is_visible("#image-preview img")
    metas = page.eval_on_selector_all("#results li .meta", "els => els.map(e => e.textContent)")
    assert all("_2.png" in t for t in metas), metas
    copies = page.eval_on_selector_all("#results li .copies", "els => els.map(e => e.textContent)")
    assert len(copies) == 1 and copies[0].startswith("+1 copy") and copies[0].endswith("_2.png"), copies
    assert page.eval_on_selector("#results li img", "img => img.naturalWidth") > 0

    page.click("#image-clear")
    page.check("input[name=target][value=audio]")
    page.uncheck("input[name=target][value=image]")
    page.set_input_files("#audio", str(corpus_files("audio", "9", 5)[4]))
    _search(page)
    metas = page.eval_on_selector_all("#results li .meta", "els => els.map(e => e.textContent)")
    assert all(" 9_" in t or t.split("·")[-1].strip().startswith("9_") for t in metas), metas
    assert page.eval_on_selector("#results li audio", "a => a.getAttribute('src')").startswith("/api/items/")

    page.click("#audio-clear")
    page.click("#record")
    page.wait_for_timeout(2500)
    page.click("#record")
    page.wait_for_function("/Recorded/.test(document.getElementById('record-status').textContent)")
    _search(page)
    metas = page.eval_on_selector_all("#results li .meta", "els => els.map(e => e.textContent)")
    assert metas[0].split("·")[-1].strip().startswith("6_"), metas

    page.click("#audio-clear")
    page.check("input[name=target][value=image]")
    page.uncheck("input[name=target][value=audio]")
    page.fill("#k", "10")
    page.fill("#text", "a number")
    page.wait_for_function("/^u-[0-9a-f]{16}$/.test(document.getElementById('user').textContent)")
    me = page.text_content("#user")
    before = _search(page)
    liked = before[-1]
    page.evaluate("document.getElementById('summary').textContent = ''")
    page.click(f"#results li[data-id='{liked['id']}'] button.like")
    page.wait_for_function("/result/.test(document.getElementById('summary').textContent)")
    after = _results(page)
    assert after != before
    position = [r["id"] for r in after].index(liked["id"]) if liked["id"] in [r["id"] for r in after] else 99
    assert position < len(before) - 1, (before, after)
    assert "cm_user" not in page.evaluate("document.cookie")  # HttpOnly: the page's script cannot read it
    history = page.evaluate(f"fetch('/api/users/{me}/feedback').then(r => r.json())")
    assert [str(e["item"]) for e in history["events"]] == [str(liked["id"])]
    assert page.evaluate("fetch('/api/users/someone-else/feedback').then(r => r.status)") == 403
    page.click("#forget")
    page.wait_for_function("/Forgot 1/.test(document.getElementById('message').textContent)")
    assert not errors, errors


def test_image_by_drag_and_drop_and_by_paste(server, browser):
    url, _ = server
    page = browser.new_page(bypass_csp=True)
    page.goto(url)
    data = list(corpus_files("image", "5", 5)[4].read_bytes())
    make = ("bytes => { const dt = new DataTransfer(); dt.items.add(new File([new Uint8Array(bytes)], 'five.png', "
            "{type: 'image/png'})); return dt; }")
    page.dispatch_event("#image-drop", "drop", {"dataTransfer": page.evaluate_handle(make, data)})
    assert page.is_visible("#image-preview img")
    page.uncheck("input[name=target][value=text]")
    page.uncheck("input[name=target][value=audio]")
    page.fill("#k", "3")
    found = _search(page)
    texts = page.eval_on_selector_all("#results li .meta", "els => els.map(e => e.textContent)")
    assert len(found) == 3 and all("_5.png" in t for t in texts), texts
    page.click("#image-clear")
    seven = list(corpus_files("image", "7", 5)[4].read_bytes())
    page.evaluate("bytes => { const dt = new DataTransfer(); dt.items.add(new File([new Uint8Array(bytes)], "
                  "'seven.png', {type: 'image/png'})); document.dispatchEvent(new ClipboardEvent('paste', "
                  "{clipboardData: dt})); }", seven)
    assert page.is_visible("#image-preview img")
    _search(page)
    texts = page.eval_on_selector_all("#results li .meta", "els => els.map(e => e.textContent)")
    assert all("_7.png" in t for t in texts), texts


def test_errors_and_empty_input_are_explained(server, browser):
    url, _ = server
    page = browser.new_page(bypass_csp=True)  # lets the test evaluate its own probes; the app needs no eval
    page.goto(url)
    page.click("#search")
    assert "first" in page.text_content("#message")
    bad = Path(server[1]) / "not-an-image.png"
    bad.write_text("plain text, not pixels")
    page.set_input_files("#image", str(bad))
    page.click("#search")
    page.wait_for_function("document.getElementById('message').textContent.length > 0 && "
                           "!/first/.test(document.getElementById('message').textContent)")
    assert "image" in page.text_content("#message")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.tagName") in ("INPUT", "BUTTON", "DIV", "A")


@pytest.fixture(scope="module")
def demo_server(demo_collection):
    """The whole demo corpus (images, sounds and texts), served read-only."""
    with serving(demo_collection) as url:
        yield url


def test_mixed_search_shows_images_sounds_and_texts_and_groups_them_by_kind(demo_server, browser):
    page = browser.new_page(bypass_csp=True)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(demo_server)
    about = page.text_content("#about")
    assert "starter-digits" in about and "digits world" in about  # the empty page: which model, what it knows
    page.fill("#text", "someone saying seven")
    found = _search(page)
    assert len(found) == 12 and {r["modality"] for r in found} == {"image", "audio", "text"}
    assert all(r["label"] == "7" and 0.9 <= float(r["score"]) <= 1.0 for r in found), found
    assert not page.is_visible("#about") and not page.is_visible("#notice")
    page.check("#group")
    groups = page.eval_on_selector_all(
        "#groups section.group", "els => els.map(e => ({kind: e.dataset.modality, heading: e.querySelector('h2')"
        ".textContent, cards: [...e.querySelectorAll('li.result')].map(li => li.dataset.modality)}))")
    assert [g["kind"] for g in groups] == ["image", "audio", "text"]
    assert all(set(g["cards"]) == {g["kind"]} for g in groups) and sum(len(g["cards"]) for g in groups) == 12
    assert not page.is_visible("#results") and page.is_visible("#groups")
    page.uncheck("#group")
    assert page.is_visible("#results") and len(_results(page)) == 12
    assert not errors, errors


def test_out_of_domain_input_says_the_model_may_not_know(demo_server, browser):
    page = browser.new_page(bypass_csp=True)
    page.goto(demo_server)
    page.fill("#text", "a dog barking in the park")
    _search(page)
    assert page.is_visible("#notice")
    notice = page.text_content("#notice")
    assert notice.startswith("Nothing close; this model may not know this kind of content"), notice
    assert "starter-digits" in notice and "digits world" in notice
    page.fill("#text", "a handwritten four")
    _search(page)
    assert not page.is_visible("#notice")
