"""Decoding and embedding in worker processes: the same outcomes as in the indexing process,
in order, and a file that crashes its worker costs only that file."""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import signal
import time

import numpy as np
import pytest
from support.media import write_good, write_hostile

from crossmodal.ingest import embed as pipeline
from crossmodal.ingest.discover import discover
from crossmodal.ingest.embed import embed_stream
from crossmodal.ingest.workers import OrderedProcessMap, fork_context
from crossmodal.items import Skip
from crossmodal.settings import IngestSettings
from crossmodal.storage.catalog import Catalog

pytestmark = pytest.mark.skipif(fork_context() is None, reason="needs fork")
CRASHED = "reading this file crashed the worker process"


@pytest.fixture(scope="module")
def candidates(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    write_good(folder / "good")
    write_hostile(folder / "hostile")
    cands, _ = discover([folder])
    return cands


def _outcomes(cands, aligner, workers, catalog):
    settings = IngestSettings(batch_size=8, workers=workers)
    batches = list(embed_stream(cands, aligner, settings, {}, catalog.content_lookup()))
    assert all(len(b) <= 8 for b in batches)
    return [o for b in batches for o in b]


def _same(a, b):
    assert [o.cand.uri for o in a] == [o.cand.uri for o in b]
    for x, y in zip(a, b):
        assert x.content_hash == y.content_hash
        if isinstance(x.item, Skip):
            assert x.item == y.item
            continue
        assert x.item.meta == y.item.meta and x.item.vectors.keys() == y.item.vectors.keys()
        for kind in x.item.vectors:
            np.testing.assert_allclose(x.item.vectors[kind], y.item.vectors[kind], atol=1e-5)
        assert [(s.modality, s.start, s.end) for s in x.item.segments] == \
               [(s.modality, s.start, s.end) for s in y.item.segments]


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_give_what_the_indexing_process_gives_in_the_same_order(candidates, starter, workers, tmp_path):
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        inline = _outcomes(candidates, starter, 0, catalog)
        _same(_outcomes(candidates, starter, workers, catalog), inline)
    assert sum(isinstance(o.item, Skip) for o in inline) >= 5  # the hostile files that reach a decoder


def test_a_file_that_crashes_its_worker_is_the_only_one_lost(candidates, starter, monkeypatch, tmp_path):
    victim = next(c for c in candidates if c.modality == "audio")
    real = pipeline.decode_candidate

    def crash_on_victim(cand, settings):
        if cand.uri == victim.uri and os.getpid() != parent:
            faulthandler.disable()  # pytest's fault handler would print this intended crash's traceback
            os.kill(os.getpid(), signal.SIGSEGV)  # what a native decoder bug does to its process
        return real(cand, settings)

    parent = os.getpid()
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        expected = _outcomes(candidates, starter, 0, catalog)
        monkeypatch.setattr(pipeline, "decode_candidate", crash_on_victim)  # inherited by the forked workers
        got = _outcomes(candidates, starter, 2, catalog)
    assert [o.item for o in got if o.cand.uri == victim.uri] == [Skip(victim.uri, CRASHED)]
    _same([o for o in got if o.cand.uri != victim.uri], [o for o in expected if o.cand.uri != victim.uri])


@pytest.mark.parametrize("folder", ["plain", "odd #1 ?x=%20 y"])
def test_contents_already_catalogued_are_not_embedded_again(candidates, starter, tmp_path, folder):
    """Workers open the catalog read-only by URI, whatever characters its path holds."""
    (tmp_path / folder).mkdir()
    with Catalog(tmp_path / folder / "catalog.sqlite") as catalog:
        first = [o for o in _outcomes(candidates, starter, 0, catalog) if not isinstance(o.item, Skip)]
        with catalog.transaction():
            catalog.add_item(first[0].item)
        for workers in (0, 2):
            again = {o.cand.uri: o for o in _outcomes(candidates, starter, workers, catalog)}
            assert again[first[0].cand.uri].item is None
            assert all(again[o.cand.uri].item is not None for o in first[1:])


def _double(xs):
    return [2 * x for x in xs]


def _lost(x):
    return None


def test_workers_exit_on_their_own_after_the_last_chunk_and_at_once_when_stopped_early():
    """A finished map does not wait for its idle workers (they exit while the indexer
    publishes); a map abandoned part-way stops its workers before it returns."""
    assert sum(OrderedProcessMap(_double, list(range(40)), 2, _lost).run(4), []) == [2 * x for x in range(40)]
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not multiprocessing.active_children()
    stream = OrderedProcessMap(_double, list(range(40)), 2, _lost).run(4)
    assert next(stream) == [0, 2, 4, 6]
    stream.close()
    assert not multiprocessing.active_children()


def _die_on_5(xs):
    if 5 in xs:
        os.kill(os.getpid(), signal.SIGKILL)
    return list(xs)


def test_a_worker_dying_while_the_caller_holds_results_costs_only_its_item():
    """The pool can break between two hand-overs (a worker dies while the caller is storing
    the previous chunk); the chunks not yet handed over are redone, not lost, and the run
    goes on."""
    stream = OrderedProcessMap(_die_on_5, list(range(40)), 1, _lost, ahead=2).run(4)
    out = list(next(stream))
    time.sleep(1.0)  # the worker reaches item 5 and dies while we hold the first chunk
    for chunk in stream:
        out += chunk
    assert out == [x if x != 5 else None for x in range(40)]


def test_the_ingest_settings_budgets_are_the_ones_decoding_uses(tmp_path):
    from PIL import Image

    from crossmodal.ingest.discover import Candidate
    from crossmodal.ingest.embed import decode_or_skip

    Image.new("RGB", (100, 100), (9, 9, 9)).save(tmp_path / "small.png")
    cand = Candidate(uri=str(tmp_path / "small.png"), media={"image": tmp_path / "small.png"})
    assert not isinstance(decode_or_skip(cand, IngestSettings()), Skip)
    skipped = decode_or_skip(cand, IngestSettings(max_image_bytes=10_000))
    assert isinstance(skipped, Skip) and "10,000 B" in skipped.reason, skipped
