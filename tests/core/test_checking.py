"""Damage is never silent: each way issue 18 damaged a collection (flipped bytes in stored
vectors, swapped or truncated index files, a deleted or overwritten catalog, leftovers of killed
runs) is refused or left out with one line that names the file and the fix; `crossmodal check`
finds it, `check --repair` and `index` restore what the catalog can restore. Real collections
(the demo corpus, indexed with the starter model), damaged on disk."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3

import pytest
from support.cli import run_cli

from crossmodal.cli import EXIT_ERROR, EXIT_OK
from crossmodal.core import Engine, query_from_fields
from crossmodal.demo.showcase import CORPUS_DIR, CORPUS_LIST
from crossmodal.errors import CatalogError, IndexFileError
from crossmodal.server import create_app


@pytest.fixture()
def coll(tmp_path, demo_collection):
    """A copy of the demo collection (830 items) that the test may damage."""
    return shutil.copytree(demo_collection, tmp_path / "coll")


def _manifest(folder) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _index_file(folder, name: str):
    return folder / _manifest(folder)["indexes"][name]["file"]


def _search(folder, starter, **fields) -> list:
    with Engine.open(folder, aligner=starter) as engine:
        return engine.search(query_from_fields({"k": 10, **fields})).results


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("crossmodal: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_flipped_bytes_in_stored_vectors_are_never_ranked_and_check_repair_plus_index_restore_them(
        coll, starter, capsys):
    with sqlite3.connect(coll / "catalog.sqlite") as conn:  # 16 bytes in each of 30 image vectors, as in issue 18
        rows = conn.execute("SELECT id, item_id, vector FROM vectors WHERE kind='image' ORDER BY id LIMIT 30")
        rows = rows.fetchall()
        for vector_id, _, blob in rows:
            conn.execute("UPDATE vectors SET vector=? WHERE id=?", (blob[:40] + b"\x7f" * 16 + blob[56:], vector_id))
    damaged = {item for _, item, _ in rows}
    with Engine.open(coll) as engine:
        engine.feedback("ana", min(damaged), "like")
    results = _search(coll, starter, text="seven", targets="image", user="ana")
    assert results and not damaged & {r.id for r in results} and max(r.score for r in results) <= 1.0 + 1e-4

    code, out, _ = run_cli(capsys, "check", "--collection", str(coll))
    assert code == EXIT_ERROR
    lines = [line for line in out.splitlines() if line.startswith("vectors")]
    assert len(lines) == 30 and all("stored vector(s) damaged" in line and "items.jsonl" in line for line in lines)
    assert out.splitlines()[-1].endswith("30 finding(s), 0 repaired, 30 left")

    code, out, _ = run_cli(capsys, "check", "--repair", "--collection", str(coll), "--json")
    report = json.loads(out)
    assert code == EXIT_ERROR and not report["healthy"]  # damage is left: only the files can give the vectors back
    assert {f["area"] for f in report["findings"]} == {"vectors"}
    assert all("recorded for a new embedding" in f["fix"] for f in report["findings"])

    code, out, err = run_cli(capsys, "index", str(CORPUS_LIST), "--collection", str(coll), "-q")
    assert code == EXIT_OK, err
    assert "0 added, 30 updated" in out
    assert run_cli(capsys, "check", "--collection", str(coll))[0] == EXIT_OK
    with Engine.open(coll) as engine:  # same items, same ids, feedback kept
        assert engine.counts()["items"] == 830 and all(engine.item(i) for i in damaged)
        assert [e["item"] for e in engine.export_user("ana")["events"]] == [min(damaged)]
    results = _search(coll, starter, image=str(CORPUS_DIR / "images" / "mnist_t10k_00007_9.png"), targets="image")
    assert results[0].cosine > 0.999 and results[0].uri.endswith("mnist_t10k_00007_9.png")


@pytest.mark.parametrize("other", ["audio", "text"])  # image and audio files have equal sizes; text is smaller
def test_swapped_index_files_are_refused_with_the_file_named_and_check_repair_rebuilds_them(
        coll, starter, capsys, other):
    image, swapped = _index_file(coll, "image"), _index_file(coll, other)
    assert (image.stat().st_size == swapped.stat().st_size) == (other == "audio")
    image.rename(coll / "t")
    swapped.rename(image)
    (coll / "t").rename(swapped)

    code, _, err = run_cli(capsys, "search", "--collection", str(coll), "--text", "seven", "--target", "image")
    line = _one_line_error(err)
    assert code == EXIT_ERROR and f"{image}: " in line and "crossmodal check --repair" in line
    with pytest.raises(IndexFileError, match=str(swapped.name)):
        _search(coll, starter, text="seven", targets=other)

    code, out, _ = run_cli(capsys, "check", "--collection", str(coll))
    assert code == EXIT_ERROR and {line.split(":")[0].split()[-1] for line in out.splitlines()
                                   if line.startswith("index")} == {str(image), str(swapped)}
    code, out, _ = run_cli(capsys, "check", "--repair", "--collection", str(coll))
    assert code == EXIT_OK and "2 repaired, 0 left" in out
    assert {r.modality for r in _search(coll, starter, text="seven", targets="image")} == {"image"}


def test_a_truncated_index_file_is_refused_and_the_next_index_run_rebuilds_it(coll, starter, capsys, caplog):
    audio = _index_file(coll, "audio")
    with open(audio, "r+b") as handle:
        handle.truncate(1000)
    code, _, err = run_cli(capsys, "search", "--collection", str(coll), "--text", "seven", "--target", "audio")
    assert code == EXIT_ERROR and "truncated or replaced" in _one_line_error(err) and str(audio) in err

    with caplog.at_level(logging.WARNING):
        code, out, err = run_cli(capsys, "index", str(CORPUS_LIST), "--collection", str(coll))
    assert code == EXIT_OK and "830 unchanged" in out
    assert [r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage()] == [
        f"rebuilding {audio} from the catalog: it is 1000 bytes long, but was 156090 when it was written "
        f"(truncated or replaced)"]
    results = _search(coll, starter, text="seven", targets="audio")
    assert results and {r.modality for r in results} == {"audio"}


def test_a_deleted_or_emptied_catalog_is_an_error_and_no_new_one_appears(coll, capsys):
    (coll / "catalog.sqlite").unlink()
    for args in (["search", "--text", "seven"], ["index", str(CORPUS_LIST)], ["user", "--user", "ana"]):
        code, out, err = run_cli(capsys, *args, "--collection", str(coll))
        assert code == EXIT_ERROR and "catalog.sqlite: the catalog is missing" in _one_line_error(err)
        assert not (coll / "catalog.sqlite").exists()
    code, out, _ = run_cli(capsys, "check", "--collection", str(coll))
    assert code == EXIT_ERROR and "the catalog is missing" in out and not (coll / "catalog.sqlite").exists()
    (coll / "catalog.sqlite").touch()  # an emptied file is no fresh catalog either
    code, out, err = run_cli(capsys, "search", "--text", "seven", "--collection", str(coll))
    assert code == EXIT_ERROR and "catalog.sqlite: holds no catalog" in _one_line_error(err)
    assert (coll / "catalog.sqlite").stat().st_size == 0


def test_overwritten_catalog_pages_give_one_line_in_the_cli_503_over_http_and_a_damaged_health(coll, starter, capsys):
    path = coll / "catalog.sqlite"
    pages = path.stat().st_size // 4096
    with open(path, "r+b") as handle:  # the second half of the file, page headers and all
        for page in range(pages // 2, pages):
            handle.seek(page * 4096)
            handle.write(os.urandom(4096))
    code, _, err = run_cli(capsys, "search", "--collection", str(coll), "--text", "seven")
    assert code == EXIT_ERROR and "catalog.sqlite: the catalog is damaged" in _one_line_error(err)

    with Engine.open(coll, aligner=starter) as engine:
        client = create_app(engine).test_client()
        response = client.post("/api/search", json={"text": "seven"})
        assert response.status_code == 503 and "Traceback" not in response.get_data(as_text=True)
        response = client.get("/api/health")
        health = response.get_json()
        assert response.status_code == 503 and health["status"] == "damaged" and "malformed" in health["finding"]
        assert str(coll) not in json.dumps(health)  # paths are shown inside the collection folder
    with pytest.raises(CatalogError):
        _search(coll, starter, text="seven")

    code, out, _ = run_cli(capsys, "check", "--repair", "--collection", str(coll))
    assert code == EXIT_ERROR and out.startswith("catalog") and "SQLite integrity check failed" in out
    assert "not repaired: the catalog they would be rebuilt from is damaged" in out


def test_leftovers_of_a_killed_run_are_listed_by_check_and_cleaned_by_the_next_index(coll, capsys):
    generation = _manifest(coll)["catalog_generation"]
    shutil.copy(_index_file(coll, "joint"), coll / f"joint-{generation + 1}.faiss")  # published by no manifest
    (coll / f".image-{generation + 1}.faiss.x8fk2.tmp").write_bytes(b"\0" * 512)  # torn write
    (coll / ".manifest.json.31337.tmp").write_text('{"format":')
    code, out, _ = run_cli(capsys, "check", "--collection", str(coll))
    assert code == EXIT_ERROR and sum(line.startswith("leftover") for line in out.splitlines()) == 3

    code, out, err = run_cli(capsys, "index", str(CORPUS_LIST), "--collection", str(coll), "-q")
    assert code == EXIT_OK, err
    assert not [p.name for p in coll.iterdir() if ".tmp" in p.name or p.name == f"joint-{generation + 1}.faiss"]
    code, out, _ = run_cli(capsys, "check", "--collection", str(coll), "--json")
    assert code == EXIT_OK and json.loads(out)["healthy"] and json.loads(out)["checked"]["vectors"] == 830


def test_health_reports_a_missing_index_file_and_check_names_it(coll):
    with Engine.open(coll) as engine:
        assert engine.health()["status"] == "ok"
        _index_file(coll, "text").unlink()
        health = engine.health()
        assert health["status"] == "damaged" and health["finding"].startswith(_index_file(coll, "text").name)
        report = engine.check()
        assert not report.healthy and [f.area for f in report.findings] == ["index"]
        report = engine.check(repair=True)
        assert report.healthy and engine.health()["status"] == "ok"
