"""Unicode queries on the command line: `crossmodal search --text 七` in a subprocess, under the bare C
locale too, finds images of the right digit and prints text results as they were written
(right-to-left and combining characters included); a query in decomposed (NFD) form is the
same query as its composed (NFC) form, since the tokenizer normalises to NFC."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata

import pytest
from support.cli import run_cli
from support.media import copy_digits, index_paths

from crossmodal.settings import Settings

HEBREW = "שבע ספרות"
COMBINING = "nu\u0301mero siete"  # NFD, as some keyboards and file systems give it


@pytest.fixture(scope="module")
def collection(tmp_path_factory, starter):
    root = tmp_path_factory.mktemp("unicode-cli")
    media = copy_digits(root / "media", 2, 1)
    (media / "texts").mkdir()
    (media / "texts" / "hebrew.txt").write_text(HEBREW, encoding="utf-8")
    (media / "texts" / "combining.txt").write_text(COMBINING, encoding="utf-8")
    index_paths(root / "coll", [media], Settings(), progress=False, aligner=starter)
    return root / "coll"


def _search(collection, *args: str, locale: str = "C") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "PYTHONUTF8", "LANG", "LC_ALL")}
    env.update(LANG=locale, LC_ALL=locale)
    return subprocess.run([sys.executable, "-m", "crossmodal", "search", "--collection", str(collection), *args],
                          capture_output=True, env=env, timeout=120, check=False)


@pytest.mark.parametrize("query", ["七", "有人說七", "siete", "sieben"])
def test_non_english_query_in_a_subprocess_finds_the_digit(collection, query):
    done = _search(collection, "--text", query, "--target", "image", "-k", "2", "--json")
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    found = json.loads(done.stdout.decode("utf-8"))["results"]
    assert [r["uri"].rsplit("_", 1)[-1] for r in found] == ["7.png", "7.png"], found


@pytest.mark.parametrize("locale", ["C", "C.UTF-8"])
def test_text_results_are_printed_as_written(collection, locale):
    done = _search(collection, "--text", "número siete", "--target", "text", "-k", "5", locale=locale)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    out = done.stdout.decode("utf-8")
    assert HEBREW in out and COMBINING in out  # the bytes of the files, NFD kept as NFD
    as_json = _search(collection, "--text", "número siete", "--target", "text", "-k", "5", "--json", locale=locale)
    texts = {r["text"] for r in json.loads(as_json.stdout.decode("utf-8"))["results"]}
    assert {HEBREW, COMBINING} <= texts


def test_decomposed_and_composed_queries_are_one_query(collection, capsys):
    composed = unicodedata.normalize("NFC", COMBINING)
    assert composed != COMBINING
    runs = []
    for query in (composed, COMBINING, "数字七", unicodedata.normalize("NFD", "数字七")):
        code, out, err = run_cli(capsys, "search", "--collection", str(collection), "--text", query, "-k", "5",
                                 "--json")
        assert code == 0, err
        runs.append([(r["id"], round(r["score"], 5)) for r in json.loads(out)["results"]])
    assert runs[0] == runs[1] and runs[2] == runs[3]
