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


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """A real Milvus standalone server (tests/support/milvus_server.py), started on first use and
    stopped at the end of the run; its token is in CROSSMODAL_MILVUS_TOKEN meanwhile, so engines
    and `crossmodal` processes opened on its collections connect as the CLI would."""
    import importlib.util
    import os

    from support.milvus_server import start_milvus
    from support.tools import require

    require(importlib.util.find_spec("milvus") is not None,
            "the Milvus server tests need the `milvus` package: .venv/bin/pip install -c constraints.txt -e .[test]")
    server = start_milvus(tmp_path_factory.mktemp("milvus-server"))
    before = os.environ.get("CROSSMODAL_MILVUS_TOKEN")
    os.environ["CROSSMODAL_MILVUS_TOKEN"] = server.token
    try:
        yield server
    finally:
        server.stop()
        if before is None:
            os.environ.pop("CROSSMODAL_MILVUS_TOKEN", None)
        else:
            os.environ["CROSSMODAL_MILVUS_TOKEN"] = before
