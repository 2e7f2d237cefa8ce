"""`crossmodal duplicates` and `search --no-collapse` on a real collection of copies."""

from __future__ import annotations

import json

import pytest
from support.cli import run_cli
from support.copies import GROUPS, names, write_copies
from support.media import index_paths

from crossmodal.cli import EXIT_ERROR, EXIT_OK
from crossmodal.settings import Settings


@pytest.fixture(scope="module")
def collection(tmp_path_factory, starter):
    root = tmp_path_factory.mktemp("cli-copies")
    index_paths(root / "coll", [write_copies(root / "media")], Settings(), progress=False, aligner=starter)
    return root


def test_duplicates_lists_exactly_the_groups(capsys, collection):
    code, out, err = run_cli(capsys, "duplicates", "--collection", str(collection / "coll"), "--json")
    assert code == EXIT_OK, err
    body = json.loads(out)
    assert body["threshold"] == Settings().search.duplicate_threshold
    found = {g["modality"]: names(u for item in g["items"] for u in item["uris"]) for g in body["groups"]}
    assert found == GROUPS

    code, out, _ = run_cli(capsys, "duplicates", "-c", str(collection / "coll"), "--threshold", "0.999")
    assert code == EXIT_OK
    assert out.splitlines()[-1].startswith("collection coll: ") and "cosine >= 0.999" in out
    assert "seven_again.wav" not in out and "other_three.png" not in out

    code, _, err = run_cli(capsys, "duplicates", "-c", str(collection / "coll"), "--threshold", "0")
    assert code == EXIT_ERROR and "threshold" in err


def test_search_prints_copies_and_no_collapse_prints_every_file(capsys, collection):
    query = ["search", "--collection", str(collection / "coll"), "--audio", str(collection / "media" / "seven.wav"),
             "--target", "audio", "-k", "5"]
    code, out, err = run_cli(capsys, *query)
    assert code == EXIT_OK, err
    assert "+ 3 copies: " in out and len([line for line in out.splitlines() if line[:4].strip().endswith(".")]) == 2
    code, out, _ = run_cli(capsys, *query, "--no-collapse")
    assert code == EXIT_OK and not any(line.strip().startswith("+ ") for line in out.splitlines())
    assert GROUPS["audio"] <= {word.rsplit("/", 1)[-1] for word in out.split()}
    code, out, _ = run_cli(capsys, *query, "--json")
    results = json.loads(out)["results"]
    assert [len(r["copies"]) for r in results] == [3, 0] or [len(r["copies"]) for r in results] == [0, 3]
