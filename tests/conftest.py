"""Shared fixtures: the shipped starter model, and the demo collection built once per run."""

from __future__ import annotations

import pytest

from crossmodal.aligner import load_aligner
from crossmodal.core import Engine
from crossmodal.demo.showcase import CORPUS_LIST
from crossmodal.settings import Settings


@pytest.fixture(scope="session")
def starter():
    """The shipped starter model, loaded once."""
    return load_aligner("starter")


@pytest.fixture(scope="session")
def demo_collection(tmp_path_factory, starter):
    """The whole demo corpus indexed into a collection (read-only for tests: copy it to change it)."""
    folder = tmp_path_factory.mktemp("demo") / "demo"
    with Engine.open(folder, create=True, settings=Settings(), aligner=starter) as engine:
        engine.index([CORPUS_LIST], progress=False)
    return folder
