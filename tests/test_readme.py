"""The README's commands and Python example work as written: every `.venv/bin/crossmodal`
command parses, the ones that need only local files run, and the Python example runs."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.media import corpus_files

from crossmodal.cli.output import program
from crossmodal.cli.parser import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
PROGRAM = ".venv/bin/crossmodal"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def _commands() -> list[str]:
    """Each `.venv/bin/crossmodal` command of the README's bash blocks, continuation lines joined."""
    out = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split("  #", 1)[0].strip()
            if command.startswith(PROGRAM):
                out.append(command)
    return out


COMMANDS = _commands()


def test_the_readme_is_for_users():
    assert len(README.splitlines()) < 300
    assert len(COMMANDS) >= 8


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_parses(command):
    build_parser().parse_args(shlex.split(command)[1:])


@pytest.fixture()
def user_home(tmp_path):
    """A working folder after the quick start: `.venv` there, and a home with pictures,
    recordings and notes, a query image and a clip."""
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    home = tmp_path / "home"
    for folder, files in (("Pictures", corpus_files("image", "4", 3) + corpus_files("image", "8", 3)),
                          ("Recordings", corpus_files("audio", "4", 3) + corpus_files("audio", "8", 3))):
        (home / folder).mkdir(parents=True)
        for path in files:
            shutil.copy(path, home / folder / path.name)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "four.txt").write_text("Four is two plus two; a square has four sides.\n")
    shutil.copy(corpus_files("image", "4", 4)[3], tmp_path / "query.png")
    shutil.copy(corpus_files("audio", "8", 4)[3], tmp_path / "clip.wav")
    return tmp_path, home


def _is_four(path: str) -> bool:
    """A demo-corpus file of the digit 4 (images end in _4.png, recordings start with 4_)."""
    name = Path(path).name
    return name.endswith("_4.png") or name.startswith("4_")


@pytest.mark.slow
def test_searching_your_own_files_runs_as_written(user_home):
    cwd, home = user_home
    section = README.split("## Search your own files", 1)[1].split("\n## ", 1)[0]
    commands = [c for c in COMMANDS if c in section]
    assert len(commands) == 4
    env = {**os.environ, "HOME": str(home)}
    outputs = []
    for command in commands:
        done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (command, done.stderr)
        outputs.append(done.stdout)
    assert "13 added" in outputs[0]
    assert all(_is_four(next(t for t in line.split() if "/" in t)) for line in outputs[1].splitlines()), outputs[1]
    assert _is_four(json.loads(outputs[2])["results"][0]["uri"])
    assert "plan:" in outputs[3] and "relevance" in outputs[3]


@pytest.mark.slow
def test_the_python_example_runs(user_home, monkeypatch, capsys):
    cwd, home = user_home
    (cwd / "photos").symlink_to(home / "Pictures")
    (cwd / "clips").symlink_to(home / "Recordings")
    monkeypatch.chdir(cwd)
    [example] = _blocks("python")
    exec(compile(example, "README.md", "exec"), {"__name__": "readme"})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "12 added, 0 skipped"
    assert all(_is_four(line.split()[2]) for line in lines[1:6]), lines
    assert lines[6].startswith("1 event(s) of ana's used;")


def test_the_demo_prints_a_command_that_works_from_the_repository(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", [str(ROOT / PROGRAM), "demo"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert program() == PROGRAM
