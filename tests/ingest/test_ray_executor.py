"""`crossmodal index --executor ray --cluster ADDRESS` on a real Ray cluster started here (one head
node with three CPUs, tests/support/ray_cluster.py): batches are decoded and embedded by several
Ray worker processes and the indexing process writes them, and the collection holds the same
items with the same vectors as one indexed by the local process pool."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from support.media import copy_digits, index_paths

from crossmodal.errors import ConfigError
from crossmodal.ingest.ray_executor import check_executor
from crossmodal.settings import IngestSettings, Settings
from crossmodal.storage.collection import Collection


@pytest.fixture(scope="module")
def ray_cluster():
    import importlib.util

    from support.ray_cluster import start_ray
    from support.tools import require

    require(importlib.util.find_spec("ray") is not None,
            "the Ray ingest test needs Ray: .venv/bin/pip install -c constraints.txt -e .[test]")
    cluster = start_ray(cpus=3)
    try:
        yield cluster
    finally:
        cluster.stop()


def _vectors_by_content(folder) -> dict[tuple[str, str, int], np.ndarray]:
    """(item content hash, vector kind, position) -> vector, for every vector of the collection."""
    with Collection.open(folder) as coll:
        rows = coll.catalog.db.execute(
            "SELECT i.content_hash, v.kind, COALESCE(s.position, -1), v.vector FROM vectors v "
            "JOIN items i ON i.id = v.item_id LEFT JOIN segments s ON s.id = v.segment_id").fetchall()
        dim = coll.catalog.dim
    return {(h, kind, pos): np.frombuffer(blob, dtype=np.float32, count=dim) for h, kind, pos, blob in rows}


@pytest.mark.slow
def test_ray_workers_index_the_same_items_and_vectors_as_the_process_pool(ray_cluster, tmp_path, starter):
    media = copy_digits(tmp_path / "media", 3, 2)
    (media / "notes.txt").write_text("Someone saying seven.\n\nA handwritten four on a white page.\n")
    local = tmp_path / "local"
    report = index_paths(local, [media], Settings(ingest=IngestSettings(workers=2)), progress=False, aligner=starter)
    assert report.added == 51

    target = tmp_path / "ray"
    done = subprocess.run([sys.executable, "-m", "crossmodal", "index", str(media), "--collection", str(target),
                           "--executor", "ray", "--cluster", ray_cluster.address, "--json"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, **ray_cluster.env})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["added"] == 51
    logs = "".join(f.read_text(errors="replace") for f in ray_cluster.temp_dir.glob("session_*/logs/worker-*.out"))
    pids = {int(p) for p in re.findall(r"crossmodal Ray worker ready in process (\d+)", logs)}
    assert len(pids) == 3 and os.getpid() not in pids, pids  # one worker per CPU of the cluster

    mine, theirs = _vectors_by_content(local), _vectors_by_content(target)
    assert mine.keys() == theirs.keys() and len(mine) >= 51
    for key, vector in mine.items():
        np.testing.assert_allclose(theirs[key], vector, atol=1e-5, err_msg=str(key))
    with Collection.open(local) as a, Collection.open(target) as b:
        assert a.catalog.counts() == b.catalog.counts()
        assert {n: e["ntotal"] for n, e in a.manifest["indexes"].items()} == \
            {n: e["ntotal"] for n, e in b.manifest["indexes"].items()}


def test_an_unknown_executor_or_missing_cluster_is_a_clear_error(tmp_path, starter):
    with pytest.raises(ConfigError, match="executor must be one of local, ray"):
        check_executor("dask")
    settings = Settings(ingest=IngestSettings(executor="ray", cluster="127.0.0.1:1"))
    media = copy_digits(tmp_path / "media", 1, 0)
    with pytest.raises(ConfigError, match="cannot start Ray workers on 127.0.0.1:1"):
        index_paths(tmp_path / "c", [media], settings, progress=False, aligner=starter)
