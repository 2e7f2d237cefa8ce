"""`crossmodal recommend` and `crossmodal similar` on a copy of the demo collection with real
feedback recorded through `crossmodal feedback`: text and JSON output, exit codes."""

from __future__ import annotations

import json
import shutil

import pytest
from support.cli import run_cli

from crossmodal.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from crossmodal.core import Engine


@pytest.fixture(scope="module")
def collection(demo_collection, tmp_path_factory):
    return str(shutil.copytree(demo_collection, tmp_path_factory.mktemp("rec-cli") / "coll"))


def label_items(collection: str, label: str, modality: str) -> list[int]:
    with Engine.open(collection) as engine:
        return sorted(i for i, f in engine.collection.catalog.filter_fields().items()
                      if f["meta"].get("label") == label and f["modality"] == modality)


def test_recommend_after_feedback_in_text_and_json(capsys, collection):
    liked = label_items(collection, "9", "audio")[:3]
    for user, items in (("ana", liked), ("bo", liked[:2]), ("cy", liked[1:])):
        for item in items:
            assert run_cli(capsys, "feedback", "-c", collection, "--user", user, "--item", str(item), "--like")[0] == 0
    code, out, err = run_cli(capsys, "recommend", "-c", collection, "--user", "ana", "-k", "5", "--explain")
    assert code == EXIT_OK, err
    lines = out.splitlines()
    assert lines[0].startswith("for ana (3 liked item(s)): hybrid; collaborative model of 3 users")
    assert sum(" label 9 " in line for line in lines[1:]) >= 4 and "content " in out and "cf_weight" in out
    code, out, _ = run_cli(capsys, "recommend", "-c", collection, "--user", "dee", "-k", "4", "--target", "image",
                           "--json")
    body = json.loads(out)
    assert code == EXIT_OK and body["used"] == "popular" and {r["modality"] for r in body["results"]} == {"image"}
    code, out, _ = run_cli(capsys, "recommend", "-c", collection, "--user", "ana", "--method", "collaborative",
                           "--refit", "--json")
    assert code == EXIT_OK and json.loads(out)["model"]["fitted"]
    assert run_cli(capsys, "recommend", "-c", collection, "--user", "ana", "--target", "joint")[0] == EXIT_ERROR
    with pytest.raises(SystemExit) as exit_:
        run_cli(capsys, "recommend", "-c", collection, "--user", "ana", "-k", "0")
    assert exit_.value.code == EXIT_USAGE


def test_similar_in_text_and_json(capsys, collection):
    item = label_items(collection, "2", "image")[0]
    code, out, err = run_cli(capsys, "similar", "-c", collection, "--item", str(item), "-k", "6")
    assert code == EXIT_OK, err
    assert len(out.splitlines()) == 6 and f"#{item} " not in out
    code, out, _ = run_cli(capsys, "similar", "-c", collection, "--item", str(item), "-k", "3", "--json",
                           "--target", "audio")
    body = json.loads(out)
    assert code == EXIT_OK and [r["modality"] for r in body["results"]] == ["audio"] * 3
    code, _, err = run_cli(capsys, "similar", "-c", collection, "--item", "987654")
    assert code == EXIT_ERROR and "no item 987654" in err
