"""Synthetic speakers from the installed speech synthesisers (skipped where none is installed,
except in CI)."""

from __future__ import annotations

import pytest
from starter.tts_voices import draw_voices, installed_engines, write_tts_list
from support.tools import require

from crossmodal.ingest.decode import decode_audio
from crossmodal.ingest.item_list import read_item_list

ENGINES = installed_engines()


@pytest.fixture(autouse=True)
def _synthesiser():
    require(bool(ENGINES), "no speech synthesiser; install one with `sudo apt-get install espeak-ng`")


def test_train_and_eval_pools_never_share_a_voice():
    train = draw_voices(ENGINES, 200, "train", seed=0)
    held = draw_voices(ENGINES, 60, "eval", seed=0)
    assert len(train) == 200 and len(held) == 60
    assert not {v.identity for v in train} & {v.identity for v in held}
    assert draw_voices(ENGINES, 200, "train", seed=0) == train
    per_engine = [sum(v.engine == e for v in train) for e in {v.engine for v in train}]
    assert max(per_engine) - min(per_engine) <= 1  # engines with few voices are drawn as often


def test_each_voice_says_every_digit_into_a_decodable_labelled_clip(tmp_path):
    path, count = write_tts_list(tmp_path / "tts", "eval", voices=2, seed=3)
    items = read_item_list(path)
    assert count == len(items) == 20
    assert sorted(it.label for it in items) == sorted([str(d) for d in range(10)] * 2)
    for it in items:
        wave = decode_audio(it.path)
        assert 0.1 < wave.duration < 3.0, it.path
        assert it.meta["synthetic"] is True and it.meta["engine"] in ENGINES
