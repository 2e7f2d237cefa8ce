"""`crossmodal index`, `search` and `remove` end to end: real files, the shipped starter model,
real SQLite and FAISS. Covers counts and skips on a mixed folder with hostile files,
incremental re-indexing, pruning, removal, model mismatch, and an indexer killed mid-run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from support.cli import run_cli
from support.media import HOSTILE, corpus_files, index_paths, write_good, write_hostile

from crossmodal.aligner import load_aligner
from crossmodal.aligner.checkpoint import save_aligner
from crossmodal.cli import EXIT_ERROR, EXIT_OK, EXIT_SKIPPED
from crossmodal.core.engine import Engine
from crossmodal.errors import CrossmodalError
from crossmodal.search.query import Query, QueryPart
from crossmodal.settings import IndexSettings, Settings
from crossmodal.storage.collection import Collection


def _search(folder, aligner, targets, k, **part):
    (modality, value), = part.items()
    qp = QueryPart(modality, text=value) if modality == "text" else QueryPart(modality, path=Path(value))
    with Engine.open(folder, aligner=aligner) as engine:
        return engine.search(Query((qp,), targets=tuple(targets), k=k)).results


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    expected = write_good(folder / "good")
    write_hostile(folder / "hostile")
    return folder, expected


def test_mixed_folder_counts_skips_and_exit_code(capsys, mixed, tmp_path):
    folder, expected = mixed
    code, out, err = run_cli(capsys, "index", str(folder), "--index", str(tmp_path / "c"), "--json", "-q")
    assert code == EXIT_SKIPPED, err
    report = json.loads(out)
    skipped = {Path(s["source"]).name: s["reason"] for s in report["skipped"]}
    assert set(skipped) == set(HOSTILE), skipped
    for name, reason in HOSTILE.items():
        assert reason in skipped[name], (name, skipped[name])
        assert f"skipped {folder / 'hostile' / name}: " in err
    assert "12 input(s) skipped" in err
    assert report["added"] == expected["image"] + expected["audio"] + expected["text"]
    assert report["duplicates"] == 1
    counts = report["counts"]
    assert (counts["items_image"], counts["items_audio"], counts["items_text"]) == (
        expected["image"], expected["audio"], expected["text"])
    assert counts["files"] == expected["files"]
    assert report["indexes"]["joint"]["ntotal"] == sum(v for k, v in counts.items() if k.startswith("vectors_"))
    with Collection.open(tmp_path / "c") as coll:
        cat = coll.catalog
        long_clip = cat.item(cat.file_state(str(folder / "good" / "audio" / "long.wav")).item_id)
        spans = [(s["start"], s["end"]) for s in long_clip["segments"]]
        assert len(spans) >= 3 and spans[0][0] < spans[1][0] and spans[-1][1] > 4.0
        seven = cat.item(cat.file_state(str(folder / "good" / "seven.png")).item_id)
        assert seven["modalities"] == ["image", "text"] and seven["meta"]["caption"] == "a handwritten seven"
        copy = cat.file_state(str(folder / "good" / "images" / "copy_of_digit_0.png"))
        assert copy.item_id == cat.file_state(str(folder / "good" / "images" / "digit_0.png")).item_id
        assert cat.counts()["vectors_fused"] == 1
        assert not coll.stale


def test_incremental_reindex_touches_only_changed_files_and_prunes(mixed, tmp_path, starter):
    src, _ = mixed
    folder = tmp_path / "m"
    shutil.copytree(src / "good", folder)
    settings = Settings()
    target = tmp_path / "c"
    index_paths(target, [folder], settings, progress=False, aligner=starter)
    with Collection.open(target) as coll:
        before = {uri: s.item_id for uri, s in coll.catalog.file_states().items()}
    decoded: list[int] = []
    again = index_paths(target, [folder], settings, progress=False, aligner=starter, on_batch=decoded.append)
    assert (again.added, again.updated, again.removed, sum(decoded)) == (0, 0, 0, 0)
    assert again.unchanged == len(before)

    shutil.copy(corpus_files("image", "9", 1)[0], folder / "images" / "digit_1.png")
    (folder / "seven.txt").write_text("a seven, written by hand")
    (folder / "audio" / "five_2.wav").unlink()
    decoded.clear()
    third = index_paths(target, [folder], settings, prune=True, progress=False, aligner=starter,
                        on_batch=decoded.append)
    assert (third.updated, third.removed, sum(decoded)) == (2, 1, 2)
    with Collection.open(target) as coll:
        after = {uri: s.item_id for uri, s in coll.catalog.file_states().items()}
        changed = {str(folder / "images" / "digit_1.png"), str(folder / "seven.png")}
        assert str(folder / "audio" / "five_2.wav") not in after
        for uri, item_id in after.items():
            assert (item_id != before[uri]) == (uri in changed), uri
    top = _search(target, starter, ["image"], 1, image=folder / "images" / "digit_1.png")[0]
    assert top.uri == str(folder / "images" / "digit_1.png") and top.score > 0.99


def test_remove_by_id_and_uri(capsys, mixed, tmp_path):
    src, _ = mixed
    target = str(tmp_path / "c")
    assert run_cli(capsys, "index", str(src / "good"), "--index", target, "-q")[0] == EXIT_OK
    with Collection.open(target) as coll:
        state = coll.catalog.file_state(str(src / "good" / "audio" / "five_0.wav"))
        items_before = coll.catalog.counts()["items"]
    code, out, err = run_cli(capsys, "remove", str(state.item_id), "--uri", str(src / "good" / "seven.png"),
                          "--index", target, "--json", "-q")
    assert code == EXIT_OK, err
    assert json.loads(out) == {"removed": 2, "not_found": []}
    with Collection.open(target) as coll:
        assert coll.catalog.counts()["items"] == items_before - 2
    ids = {r.id for r in _search(target, load_aligner("starter"), ["audio"], 50, text="five")}
    assert state.item_id not in ids
    code, _, err = run_cli(capsys, "remove", "999999", "--index", target, "-q")
    assert code == EXIT_ERROR and "999999" in err


def test_search_finds_the_right_class_from_every_modality_into_every_other(tmp_path, starter):
    corpus = tmp_path / "corpus"
    labels = "0123456789"
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    for modality in ("image", "audio"):
        (corpus / modality).mkdir(parents=True)
        for label in labels:
            for src in corpus_files(modality, label, 3):
                shutil.copy(src, corpus / modality / src.name)
    (corpus / "captions.jsonl").write_text("".join(
        json.dumps({"modality": "text", "text": t, "label": lab}) + "\n"
        for lab, t in zip(labels, words)))
    index_paths(tmp_path / "c", [corpus], Settings(), progress=False, aligner=starter)

    def label_of(result) -> str:
        return result.label if result.label is not None else Path(result.uri).stem.split("_")[
            -1 if result.modality == "image" else 0]

    with Engine.open(tmp_path / "c", aligner=starter) as engine:
        for label in labels:
            queries = {
                "text": QueryPart("text", text=f"someone saying {words[int(label)]}"),
                "image": QueryPart("image", path=corpus_files("image", label, 5)[4]),
                "audio": QueryPart("audio", path=corpus_files("audio", label, 5)[4]),
            }
            for qmod, part in queries.items():
                for target in ("text", "image", "audio"):
                    if target == qmod:
                        continue
                    top = engine.search(Query((part,), targets=(target,), k=1)).results[0]
                    assert top.modality == target and label_of(top) == label, (qmod, target, label, top)


def test_search_cli_json_and_errors(capsys, mixed, tmp_path):
    src, _ = mixed
    target = str(tmp_path / "c")
    run_cli(capsys, "index", str(src / "good"), "--index", target, "-q")
    code, out, err = run_cli(capsys, "search", "--index", target, "--text", "a handwritten seven", "-k", "3",
                          "--target", "image", "--json")
    assert code == EXIT_OK, err
    results = json.loads(out)["results"]
    assert len(results) == 3
    assert set(results[0]) >= {"id", "modality", "uri", "score", "start", "end"}
    assert results[0]["uri"].endswith("seven.png")
    assert results[0]["score"] >= results[1]["score"] >= results[2]["score"]
    code, out, err = run_cli(capsys, "search", "--index", target, "--audio", str(src / "good/audio/long.wav"),
                          "--target", "audio", "--json", "-q")
    hit = next(r for r in json.loads(out)["results"] if r["uri"].endswith("long.wav"))
    assert hit["start"] is not None and hit["end"] > hit["start"]
    code, out, err = run_cli(capsys, "search", "--index", target, "--image", str(tmp_path / "missing.png"), "-q")
    assert code == EXIT_ERROR and "missing.png" in err and out == ""
    code, out, err = run_cli(capsys, "search", "--index", str(tmp_path / "nothing"), "--text", "x", "-q")
    assert code == EXIT_ERROR and "no collection" in err
    code, out, err = run_cli(capsys, "search", "--index", target, "--text", "x", "--target", "video", "-q")
    assert code == EXIT_ERROR and "video" in err


def test_another_model_is_refused_with_how_to_rebuild(capsys, mixed, tmp_path, starter):
    src, _ = mixed
    other = load_aligner("starter")
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    save_aligner(other, tmp_path / "other-model")
    target = str(tmp_path / "c")
    run_cli(capsys, "index", str(src / "good" / "images"), "--index", target, "-q")
    code, _, err = run_cli(capsys, "index", str(src / "good" / "audio"), "--index", target,
                        "--model", str(tmp_path / "other-model"), "-q")
    assert code == EXIT_ERROR and "was built with model starter-digits@" in err and "--rebuild" in err
    code, _, err = run_cli(capsys, "search", "--index", target, "--text", "one", "--model",
                        str(tmp_path / "other-model"), "-q")
    assert code == EXIT_ERROR and "--rebuild" in err
    code, out, err = run_cli(capsys, "index", str(src / "good" / "audio"), "--index", target,
                          "--model", str(tmp_path / "other-model"), "--rebuild", "--json", "-q")
    assert code == EXIT_OK, err
    with Collection.open(target) as coll:
        assert coll.model.model_id != starter.model_id
        assert coll.catalog.counts()["items"] == 8


def test_approximate_index_records_its_recall(tmp_path, mixed, starter):
    src, _ = mixed
    settings = Settings(index=IndexSettings(kind="hnsw"))
    report = index_paths(tmp_path / "c", [src / "good"], settings, progress=False, aligner=starter)
    for entry in report.indexes.values():
        assert entry["kind"] == "hnsw"
        assert 0.9 <= entry["recall@10"] <= 1.0


def test_a_damaged_manifest_is_reported_not_a_crash(tmp_path, capsys, mixed):
    src, _ = mixed
    target = tmp_path / "c"
    run_cli(capsys, "index", str(src / "good" / "text"), "--index", str(target), "-q")
    (target / "manifest.json").write_text("{ half")
    code, _, err = run_cli(capsys, "search", "--index", str(target), "--text", "one", "-q")
    assert code == EXIT_ERROR and "manifest.json" in err
    with pytest.raises(CrossmodalError):
        Collection.open(target)


@pytest.mark.slow
def test_indexer_killed_mid_run_leaves_last_good_state_and_resumes(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "audio").mkdir(parents=True)
    clips = sorted((Path(corpus_files("audio", "0", 1)[0]).parent).glob("*.wav"))
    first, rest = clips[:20], clips[20:200]
    for src in first:
        shutil.copy(src, corpus / "audio" / src.name)
    (tmp_path / "crossmodal.toml").write_text("[ingest]\nbatch_size = 4\nworkers = 1\n")
    env = {**os.environ, "CROSSMODAL_CONFIG": str(tmp_path / "crossmodal.toml")}
    target = tmp_path / "c"
    cmd = [sys.executable, "-m", "crossmodal", "index", str(corpus), "--index", str(target), "-q"]
    subprocess.run(cmd, env=env, check=True, timeout=300)
    for src in rest:
        shutil.copy(src, corpus / "audio" / src.name)
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.time() + 240
    with sqlite3.connect(target / "catalog.sqlite") as db:
        while time.time() < deadline:
            if db.execute("SELECT COUNT(*) FROM items").fetchone()[0] >= len(first) + 12:
                break
            time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with Collection.open(target) as coll:
        committed = coll.catalog.counts()["items"]
        assert len(first) + 12 <= committed < len(first) + len(rest), "kill landed outside the run"
        assert coll.stale
        assert coll.index("audio").ntotal == len(first)
    assert len(_search(target, load_aligner("starter"), ["audio"], 5, text="zero")) == 5
    subprocess.run(cmd, env=env, check=True, timeout=300)
    with Collection.open(target) as coll:
        counts = coll.catalog.counts()
        assert counts["items"] == counts["files"] == len(first) + len(rest)
        assert not coll.stale
        assert coll.index("audio").ntotal == counts["vectors_audio"]
        uris = set(coll.catalog.file_states())
        assert uris == {str(p) for p in (corpus / "audio").glob("*.wav")}


def test_an_open_engine_sees_items_indexed_after_it_opened(tmp_path, starter):
    first, later = tmp_path / "first", tmp_path / "later"
    first.mkdir()
    later.mkdir()
    shutil.copy(corpus_files("image", "1", 1)[0], first / "one.png")
    shutil.copy(corpus_files("image", "8", 1)[0], later / "eight.png")
    index_paths(tmp_path / "c", [first], Settings(), progress=False, aligner=starter)
    with Engine.open(tmp_path / "c", aligner=starter) as engine:
        query = Query((QueryPart("text", text="eight"),), targets=("image",), k=5)
        assert [Path(r.uri).name for r in engine.search(query).results] == ["one.png"]
        index_paths(tmp_path / "c", [first, later], Settings(), progress=False, aligner=starter)
        assert [Path(r.uri).name for r in engine.search(query).results] == ["eight.png", "one.png"]


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("batch_size", [1, 64])
def test_content_whose_only_file_changed_in_the_same_run_is_kept(tmp_path, starter, workers, batch_size):
    """b.png held content X alone; now b.png holds Y and a new c.png holds X. In one batch, c
    links to X before b's move could orphan it; with b stored in an earlier batch, item X is
    dropped first, so c (checked as known before that) must have X embedded again."""
    x, y = corpus_files("image", "3", 1)[0], corpus_files("image", "8", 1)[0]
    folder = tmp_path / "media"
    folder.mkdir()
    shutil.copy(x, folder / "b.png")
    settings = Settings()
    settings = replace(settings, ingest=replace(settings.ingest, workers=workers, batch_size=batch_size))
    target = tmp_path / "c"
    index_paths(target, [folder], settings, progress=False, aligner=starter)
    shutil.copy(y, folder / "b.png")
    shutil.copy(x, folder / "c.png")
    report = index_paths(target, [folder], settings, progress=False, aligner=starter)
    expected = (1, 1, 0) if batch_size == 1 else (1, 0, 1)
    assert (report.updated, report.added, report.duplicates, report.skipped) == (*expected, [])
    top = _search(target, starter, ["image"], 1, image=x)[0]
    assert top.uri == str(folder / "c.png") and top.score > 0.99
    with Collection.open(target) as coll:
        assert coll.catalog.counts()["items"] == 2


def test_indexing_leaves_the_garbage_collector_as_it_found_it(starter, tmp_path):
    import gc

    write_good(tmp_path / "files")
    assert gc.get_freeze_count() == 0
    index_paths(tmp_path / "coll", [tmp_path / "files"], Settings(), progress=False, aligner=starter)
    assert gc.get_freeze_count() == 0 and gc.isenabled()
