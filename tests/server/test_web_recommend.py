"""The web UI's "For you" view and "More like this" action in headless Chromium, against the real
server on a copy of the demo corpus with real feedback in its SQLite: a newcomer is told their
list is popular items, likes made in the browser turn it into theirs with each reason naming a
liked item, and "More like this" on a card lists the items nearest to it."""

from __future__ import annotations

import shutil

import pytest
from support.browser import INSTALL_HINT, cards, chromium_path, serving
from support.tools import require

from crossmodal.core import Engine

pytestmark = pytest.mark.slow
K = 6


@pytest.fixture(scope="module")
def site(demo_collection, tmp_path_factory):
    """The demo corpus served from a copy whose feedback already has three users who like one
    text about 8 (the newcomer's most popular item) and two of them an audio 8."""
    folder = shutil.copytree(demo_collection, tmp_path_factory.mktemp("web-rec") / "coll")
    with Engine.open(folder) as engine:
        fields = engine.collection.catalog.filter_fields()
        eights = {m: sorted(i for i, f in fields.items() if f["meta"].get("label") == "8" and f["modality"] == m)
                  for m in ("text", "audio")}
        favourite, second = eights["text"][0], eights["audio"][0]
        for user in ("u1", "u2", "u3"):
            engine.feedback(user, favourite, "like")
        for user in ("u1", "u2"):
            engine.feedback(user, second, "like")
    with serving(folder) as url:
        yield url, folder, favourite, second


@pytest.fixture(scope="module")
def browser():
    chromium = chromium_path()
    require(chromium is not None, INSTALL_HINT)
    playwright_api = pytest.importorskip("playwright.sync_api", reason=INSTALL_HINT)
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def _wait_summary(page, pattern: str) -> str:
    page.wait_for_function(f"/{pattern}/.test(document.getElementById('summary').textContent)"
                           " || document.getElementById('message').textContent")
    message = page.text_content("#message")
    assert not message, message
    return page.text_content("#summary")


def _open(page, button: str, pattern: str) -> str:
    page.evaluate("document.getElementById('summary').textContent = ''")
    page.click(button)
    return _wait_summary(page, pattern)


def test_for_you_and_more_like_this_in_a_real_browser(site, browser):
    url, folder, favourite, second = site
    page = browser.new_page(bypass_csp=True)  # lets the test evaluate its own probes; the app needs no eval
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_function("/^u-[0-9a-f]{16}$/.test(document.getElementById('user').textContent)")
    me = page.text_content("#user")
    page.fill("#k", str(K))

    summary = _open(page, "#for-you", "not liked anything|items for you,")
    assert summary.startswith("You have not liked anything yet, so these are popular and varied items"), summary
    assert page.text_content("#view-title") == "For you"
    newcomer = cards(page)
    assert [c["id"] for c in newcomer[:2]] == [favourite, second]
    assert newcomer[0]["why"] == "Why: popular: liked by 3 people"
    assert newcomer[1]["reasons"] == ["popular: liked by 2 people"]
    assert len(newcomer) == K and len({c["label"] for c in newcomer}) >= 4  # the rest varied

    page.uncheck("input[name=target][value=text]")
    page.uncheck("input[name=target][value=audio]")
    page.fill("#text", "a handwritten three")
    page.evaluate("document.getElementById('summary').textContent = ''")
    page.click("#search")
    _wait_summary(page, "result")
    assert not page.is_visible("#view-title")
    found = cards(page)
    liked = [c["id"] for c in found[:2]]
    assert [c["label"] for c in found[:2]] == ["3", "3"]
    for item in liked:
        page.evaluate("document.getElementById('summary').textContent = ''")
        page.click(f"#results li[data-id='{item}'] button.like")
        _wait_summary(page, "result")

    summary = _open(page, "#for-you", "items for you,")
    assert summary == f"{K} items for you, from what you liked and what people with similar likes liked " \
                      "(2 liked items)."
    shown = cards(page)
    with Engine.open(folder) as engine:  # what the server should have listed for this browser's user
        fields = engine.collection.catalog.filter_fields()
        expected = engine.recommend(me, k=K, targets="image", explain=True)
    assert [c["id"] for c in shown] == [r.id for r in expected.results]
    assert all(c["label"] == "3" and c["modality"] == "image" for c in shown), shown
    assert not set(liked) & {c["id"] for c in shown}
    names = {item: fields[item]["uri"].rsplit("/", 1)[-1] for item in liked}
    for card, r in zip(shown, expected.results):
        reasons = [x["text"] for x in r.explanation]
        assert card["reasons"] == reasons and card["hover"] == "\n".join(reasons)
        because = r.explanation[0]
        assert because["item"] in liked
        assert card["why"] == f"Why: because you liked #{because['item']} {names[because['item']]}"
        assert any(t.startswith("same label 3 as #") and t.split()[-1] in names.values() for t in reasons)
    first = shown[0]["id"]
    assert not page.is_visible(f"#results li[data-id='{first}'] .why .reason")
    page.click(f"#results li[data-id='{first}'] .why summary")  # expanded: every reason shows
    assert page.is_visible(f"#results li[data-id='{first}'] .why .reason")

    summary = _open(page, f"#results li[data-id='{first}'] button.more", "like #")
    assert summary == f"{K} items like #{first} (image, label 3)."
    assert page.text_content("#view-title") == f"More like #{first}"
    similar = cards(page)
    with Engine.open(folder) as engine:
        nearest = engine.similar(first, k=K, targets="image", user=me)
    assert [c["id"] for c in similar] == [r.id for r in nearest.results]
    assert first not in {c["id"] for c in similar}
    assert [c["label"] for c in similar].count("3") >= K - 1, similar
    assert not errors, errors
