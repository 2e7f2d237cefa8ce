"""Decoding in worker processes: same results as inline, in order, and a decoder that crashes
its process costs only the file it crashed on."""

from __future__ import annotations

import os
import signal
from dataclasses import replace

import pytest
from media_files import write_good, write_hostile

from crossmodal.ingest import pipeline
from crossmodal.ingest.pipeline import Decoded, decode_stream
from crossmodal.ingest.sources import Skip, discover
from crossmodal.settings import IngestSettings

pytestmark = pytest.mark.skipif(pipeline._worker_context() is None, reason="needs fork")


@pytest.fixture(scope="module")
def candidates(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    write_good(folder / "good")
    write_hostile(folder / "hostile")
    cands, _ = discover([folder])
    return cands


def _summary(results):
    return [(r.cand.uri, r.content_hash, r.meta.get("width"), r.meta.get("duration")) if isinstance(r, Decoded)
            else (r.source, r.reason) for r in results]


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_give_what_inline_decoding_gives_in_the_same_order(candidates, workers):
    settings = IngestSettings(batch_size=8)
    inline = _summary(decode_stream(candidates, replace(settings, workers=0)))
    assert _summary(decode_stream(candidates, replace(settings, workers=workers))) == inline
    assert any(isinstance(r, tuple) and len(r) == 2 for r in inline)  # the hostile files are skipped


def test_a_decoder_crash_skips_only_that_file(candidates, monkeypatch):
    victim = next(c for c in candidates if c.modality == "audio")
    real = pipeline.decode_candidate

    def crash_on_victim(cand, settings):
        if cand.uri == victim.uri:
            os.kill(os.getpid(), signal.SIGSEGV)  # what a native decoder bug does to its process
        return real(cand, settings)

    settings = IngestSettings(batch_size=8)
    expected = _summary(decode_stream(candidates, replace(settings, workers=0)))
    monkeypatch.setattr(pipeline, "decode_candidate", crash_on_victim)  # inherited by the forked workers
    results = list(decode_stream(candidates, replace(settings, workers=2)))
    crashed = [r for r in results if isinstance(r, Skip) and r.source == victim.uri]
    assert [r.reason for r in crashed] == ["the decoder crashed on this file"]
    assert [s for s in _summary(results) if s[0] != victim.uri] == [s for s in expected if s[0] != victim.uri]
