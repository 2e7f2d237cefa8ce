"""The command line end to end on the bundled corpus and the shipped starter model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from support.cli import run_cli

from crossmodal.cli import EXIT_ERROR, EXIT_OK, EXIT_SKIPPED, main
from crossmodal.core import Engine
from crossmodal.demo.showcase import CORPUS_DIR
from crossmodal.evaluation.metrics import ALL_DIRECTIONS, CROSS_MODAL_DIRECTIONS

ITEM_LIST = CORPUS_DIR / "items.jsonl"


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    """A quarter of the demo corpus, plus its files, in a folder the tests may modify."""
    folder = tmp_path_factory.mktemp("corpus")
    lines = ITEM_LIST.read_text().splitlines()
    keep = [line for i, line in enumerate(lines) if i % 4 == 0]
    for line in keep:
        item = json.loads(line)
        if "path" in item:
            (folder / item["path"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(CORPUS_DIR / item["path"], folder / item["path"])
    (folder / "items.jsonl").write_text("\n".join(keep) + "\n")
    return folder


def test_console_script_help_and_version():
    exe = shutil.which("crossmodal") or f"{sys.executable} -m crossmodal"
    done = subprocess.run([*exe.split(), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "eval" in done.stdout and "train" in done.stdout
    done = subprocess.run([*exe.split(), "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("crossmodal ")


def test_eval_json_is_keyed_by_direction_with_high_scores(capsys):
    code, out, err = run_cli(capsys, "eval", "--list", str(ITEM_LIST), "--json", "-q")
    assert code == EXIT_OK, err
    metrics = json.loads(out)
    assert sorted(metrics) == sorted(ALL_DIRECTIONS)
    for direction in CROSS_MODAL_DIRECTIONS:
        assert set(metrics[direction]) >= {"recall@1", "recall@5", "recall@10", "mAP"}
        assert metrics[direction]["recall@1"] >= 0.9, (direction, metrics[direction])
    assert "model starter" in err


def test_eval_skips_a_bad_file_and_says_so(capsys, small_corpus, tmp_path):
    corpus = tmp_path / "c"
    shutil.copytree(small_corpus, corpus)
    broken = next((corpus / "audio").iterdir())
    broken.write_text("this is not audio")
    code, out, err = run_cli(capsys, "eval", "--list", str(corpus / "items.jsonl"), "--json", "-q")
    assert code == EXIT_SKIPPED
    assert broken.name in err and "not a recognised audio format" in err
    assert "audio->image" in json.loads(out)


@pytest.mark.parametrize("argv, message", [
    (["eval", "--list", "/nonexistent/m.jsonl"], "/nonexistent/m.jsonl"),
    (["eval", "--list", str(ITEM_LIST), "--model", "no-such-model"], "no trained aligner"),
    (["train", "--list", str(ITEM_LIST), "--out", "/tmp/x", "--config", "no-such-config"], "no-such-config"),
])
def test_errors_go_to_stderr_with_exit_code(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv, "-q")
    assert code == EXIT_ERROR
    assert message in err and out == ""


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["eval"])
    assert stop.value.code == 2
    with pytest.raises(SystemExit) as stop:
        main(["train", "--list", "m", "--out", "o", "--batch-sizes", "image=zero"])
    assert stop.value.code == 2


def test_demo_indexes_the_corpus_and_shows_every_direction(capsys, caplog, tmp_path):
    code, out, _ = run_cli(capsys, "demo", "--json", "-q", "-k", "2", "--index", str(tmp_path / "demo"), "--no-serve")
    assert code == EXIT_OK
    report = json.loads(out)
    assert [q["modality"] for q in report["queries"]] == ["text", "image", "audio"]
    for query in report["queries"]:
        assert len(query["results"]) == 2
        assert all(len(hits) == 2 for hits in query["results"].values())
    text_query = report["queries"][0]
    assert all(hit["label"] == "7" for hits in text_query["results"].values() for hit in hits)
    lines = [line for line in ITEM_LIST.read_text().splitlines() if line.strip()]
    assert report["index"]["added"] == report["index"]["counts"]["items"] == len(lines) == 830
    with Engine.open(tmp_path / "demo") as engine:
        items = [engine.item(i) for i in range(1, len(lines) + 1)]
    uris = [u for item in items for u in item["uris"]]
    assert all(u.endswith((".png", ".wav")) or "items.jsonl#L" in u for u in uris)  # no licence notes, no loose copies
    texts = [s["text"] for item in items for s in item["segments"] if s["modality"] == "text"]
    assert len(texts) == len(set(texts)) == 230  # each caption and note once
    code, out, _ = run_cli(capsys, "demo", "--json", "-q", "--index", str(tmp_path / "demo"), "--no-serve")
    assert code == EXIT_OK and json.loads(out)["index"]["added"] == 0
    # built by an older starter (an upgrade changed the shipped weights): the demo rebuilds its own collection
    manifest_path = tmp_path / "demo" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    current = manifest["model"]["id"]
    manifest["model"]["id"] = current.split("@")[0] + "@000000000000"
    manifest["model"]["sha256"] = "0" * 64
    for part in manifest["model"].get("source", {}).values():
        part["sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    code, out, err = run_cli(capsys, "demo", "--json", "-q", "--index", str(tmp_path / "demo"), "--no-serve")
    assert code == EXIT_OK, err
    assert "rebuilding it from the demo corpus" in err + caplog.text
    assert json.loads(out)["index"]["added"] == 830
    assert json.loads(manifest_path.read_text())["model"]["id"] == current


@pytest.mark.slow
def test_train_then_eval_the_new_checkpoint(capsys, small_corpus, tmp_path):
    code, out, err = run_cli(capsys, "train", "--list", str(small_corpus / "items.jsonl"),
                          "--out", str(tmp_path / "ck"), "--init", "starter", "--epochs", "1",
                          "--steps-per-epoch", "2", "--batch-sizes", "text=16,image=16,audio=16",
                          "--lr", "1e-4", "--val-fraction", "0.25", "--json", "-q")
    assert code == EXIT_OK, err
    summary = json.loads(out)
    assert summary["best_epoch"] == 1 and summary["counts"]["audio"] > 0
    code, out, err = run_cli(capsys, "eval", "--list", str(small_corpus / "items.jsonl"),
                          "--model", str(tmp_path / "ck"), "--directions", "audio->text,image->text", "--json", "-q")
    assert code == EXIT_OK, err
    assert sorted(json.loads(out)) == ["audio->text", "image->text"]


@pytest.mark.slow
def test_cross_validated_folds_report_mean_and_spread(capsys, small_corpus, tmp_path):
    config = {
        "name": "fold-test", "embed_dim": 16,
        "towers": {
            "text": {"backbone": {"type": "open_clip_text", "output_dim": 16,
                                  "text_cfg": {"context_length": 16, "width": 16, "heads": 2, "layers": 1}}},
            "image": {"backbone": {"type": "digit_cnn", "channels": [8, 8], "output_dim": 16}}}}
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    code, out, err = run_cli(capsys, "eval", "--list", str(small_corpus / "items.jsonl"), "--folds", "2",
                          "--config", str(tmp_path / "cfg.json"), "--epochs", "1", "--steps-per-epoch", "2",
                          "--out", str(tmp_path / "folds"), "--json", "-q")
    assert code == EXIT_OK, err
    summary = json.loads(out)
    assert set(summary) == {"text->image", "image->text", "text->text", "image->image"}
    r1 = summary["image->text"]["recall@1"]
    assert len(r1["folds"]) == 2 and r1["std"] >= 0 and min(r1["folds"]) <= r1["mean"] <= max(r1["folds"])
    assert (tmp_path / "folds" / "fold1" / "model.safetensors").is_file()


def test_models_lists_the_starter(capsys):
    code, out, _ = run_cli(capsys, "models", "--json")
    assert code == EXIT_OK
    listing = json.loads(out)
    assert "starter" in listing["pretrained"] and "starter-digits" in listing["configs"]
