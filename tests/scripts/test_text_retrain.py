"""The text-tower-only recipe (`starter.text_retrain`) on miniature data: the image and audio towers
come out bit for bit the base model's, the text tower takes the wider context, and the checkpoint
carries every language's held-out scores."""

from __future__ import annotations

from pathlib import Path

import torch
from scripts.test_digits_world import data_dir  # noqa: F401  (a fixture)
from starter.text_retrain import POSITIONAL, retrain_text_tower, widen_context

from crossmodal.aligner import load_aligner
from crossmodal.aligner.checkpoint import read_checkpoint_config


def test_widen_context_keeps_every_weight(starter):
    rows = starter.state_dict()[POSITIONAL].shape[0]
    wide = widen_context(starter, rows + 16, "wider")
    old, new = starter.state_dict(), wide.state_dict()
    assert new[POSITIONAL].shape[0] == rows + 16 and wide.cfg.description == "wider"
    assert torch.equal(new[POSITIONAL][:rows], old[POSITIONAL])
    assert all(torch.equal(new[k], v) for k, v in old.items() if k != POSITIONAL)


def test_only_the_text_tower_changes(data_dir: Path, tmp_path: Path, starter) -> None:  # noqa: F811
    summary = retrain_text_tower(data_dir, "starter", tmp_path / "model", tmp_path / "work", context_length=72,
                                 steps=3, text_batch=16, gallery_batch=8, typeset_per_digit=0)
    model = load_aligner(tmp_path / "model")
    old, new = starter.state_dict(), model.state_dict()
    assert all(torch.equal(new[k], v) for k, v in old.items() if not k.startswith("towers.text."))
    assert any(not torch.equal(new[k], v) for k, v in old.items() if k.startswith("towers.text.") and k != POSITIONAL)
    assert model.cfg.towers["text"].backbone.text_cfg["context_length"] == 72
    saved = read_checkpoint_config(tmp_path / "model")
    assert saved["trained_on"]["base"] == starter.model_id
    by_language = saved["metrics"]["heldout_by_language"]
    assert set(by_language) == {"en", "zh-Hans", "zh-Hant", "es", "fr", "de"}
    assert set(by_language["zh-Hans"]) == {"text->image", "text->audio"}
    assert summary["metrics"]["heldout"]["text->image"] == saved["metrics"]["heldout"]["text->image"]
