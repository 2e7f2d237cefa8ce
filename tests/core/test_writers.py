"""One writer at a time, always: every command that changes a collection takes its writer lock
first; a second writer is refused (or waits with --wait) and never interleaves. Real processes,
a real lock, a real collection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from crossmodal.core import Engine
from crossmodal.demo.showcase import CORPUS_LIST
from crossmodal.settings import Settings
from crossmodal.storage.locks import LOCK_FILE, writer_active, writer_lock

pytestmark = pytest.mark.slow

WRITERS = {
    "index": ["index", "{media}"],
    "rebuild": ["index", "{media}", "--rebuild"],
    "prune": ["index", "{media}", "--prune"],
    "remove": ["remove", "--item", "1"],
    "migrate": ["migrate", "--to", "faiss"],
}


def _cli(*argv: str, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "crossmodal", *argv, "-q"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd)


def _state(folder: Path) -> tuple[dict, str]:
    with Engine.open(folder, settings=Settings()) as engine:
        return engine.counts(), (folder / "manifest.json").read_text()


@pytest.fixture()
def small(tmp_path, starter):
    media = tmp_path / "media"
    media.mkdir()
    for i, line in enumerate(CORPUS_LIST.read_text().splitlines()[:40:4]):
        path = json.loads(line)["path"]
        (media / f"{i}-{Path(path).name}").write_bytes((CORPUS_LIST.parent / path).read_bytes())
    with Engine.open(tmp_path / "c", create=True, settings=Settings(), aligner=starter) as engine:
        engine.index([media], progress=False)
    return tmp_path / "c", media


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_second_writer_is_refused_and_changes_nothing(small, writer):
    folder, media = small
    before = _state(folder)
    argv = [a.format(media=media) for a in WRITERS[writer]] + ["--collection", str(folder)]
    with writer_lock(folder):
        done = _cli(*argv)
        _, err = done.communicate(timeout=120)
    assert done.returncode == 1 and "being written by another process" in err, err
    assert _state(folder) == before


def test_a_writer_told_to_wait_goes_on_when_the_lock_is_free(small):
    folder, media = small
    release = threading.Event()

    def hold() -> None:
        with writer_lock(folder):
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    while not writer_active(folder) and holder.is_alive():
        time.sleep(0.01)
    waiting = _cli("remove", "--item", "1", "--collection", str(folder), "--wait", "60")
    time.sleep(2.0)
    assert waiting.poll() is None  # still waiting, not failed
    release.set()
    holder.join()
    _, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert _state(folder)[0]["items"] == 9


def test_a_rebuild_racing_an_index_run_never_erases_its_work(tmp_path):
    """The issue's case: `index --rebuild` started while another `index` run is writing."""
    folder = tmp_path / "c"
    first = _cli("index", str(CORPUS_LIST), "--collection", str(folder))
    deadline = time.monotonic() + 120
    while not ((folder / LOCK_FILE).exists() and writer_active(folder)):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.005)
    rebuild = _cli("index", str(CORPUS_LIST), "--collection", str(folder), "--rebuild")
    _, rebuild_err = rebuild.communicate(timeout=300)
    _, first_err = first.communicate(timeout=300)
    assert rebuild.returncode == 1 and "being written by another process" in rebuild_err
    assert first.returncode == 0, first_err
    lines = sum(1 for line in CORPUS_LIST.read_text().splitlines() if line.strip())
    counts, manifest = _state(folder)
    assert counts["items"] == lines and json.loads(manifest)["counts"]["items"] == lines
    assert not os.path.exists(folder / ".manifest.json.tmp")
