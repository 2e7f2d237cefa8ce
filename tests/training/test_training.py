"""Training on real data from the bundled demo corpus, with real towers at tiny sizes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from crossmodal.aligner import AlignerCfg, create_aligner, load_aligner
from crossmodal.demo.showcase import CORPUS_DIR
from crossmodal.evaluation.dataset import IdTable, image_batch, load_dataset
from crossmodal.evaluation.evaluate import embed_dataset, evaluate_dataset, evaluate_model_on_list, holdout_split
from crossmodal.ingest.item_list import read_item_list, write_item_list
from crossmodal.training.run import cross_validate_list, train_on_list
from crossmodal.training.trainer import TrainCfg, _Batches, seed_everything, train

SMALL = {
    "name": "small-test", "embed_dim": 32,
    "towers": {
        "text": {"backbone": {"type": "open_clip_text", "output_dim": 32,
                              "text_cfg": {"context_length": 16, "width": 32, "heads": 2, "layers": 1}},
                 "head": {"type": "mlp", "hidden_dim": 64}},
        "image": {"backbone": {"type": "digit_cnn", "channels": [16, 32], "output_dim": 64},
                  "head": {"type": "mlp", "hidden_dim": 64}},
    },
}


@pytest.fixture(scope="module")
def corpus_split():
    items = read_item_list(CORPUS_DIR / "items.jsonl")
    return holdout_split(items, 0.5, seed=0)


def _data(aligner, fit_items, test_items):
    labels = IdTable()
    return (load_dataset(fit_items, aligner, labels, progress=False),
            load_dataset(test_items, aligner, labels, progress=False))


def _fresh_heads_on_starter(corpus_split):
    """An untrained aligner with the starter model's trained backbones, and the corpus split."""
    starter = load_aligner("starter")
    aligner = create_aligner(starter.cfg)
    aligner.load_state_dict({k: v for k, v in starter.state_dict().items() if ".backbone." in k}, strict=False)
    return (aligner, *_data(aligner, *corpus_split))


@pytest.mark.slow
def test_head_training_on_frozen_backbones_lifts_recall_far_above_chance(corpus_split, tmp_path):
    """Fresh heads on the starter model's trained backbones: seconds of training, cached features."""
    aligner, fit, test = _fresh_heads_on_starter(corpus_split)
    directions = ["image->text", "audio->image", "text->audio"]
    before = evaluate_dataset(aligner, test, directions)
    cfg = TrainCfg(epochs=2, steps_per_epoch=30, lr=3e-3, warmup_steps=5, freeze_backbones=["text", "image", "audio"],
                   batch_sizes={"text": 64, "image": 64, "audio": 64}, progress=False, augment=False)
    frozen = aligner.tower("audio").backbone.proj.weight.clone()
    result = train(aligner, fit, test, cfg, tmp_path / "ck")
    after = evaluate_dataset(load_aligner(tmp_path / "ck"), test, directions)
    for direction in directions:
        assert before[direction]["recall@1"] < 0.4, before
        assert after[direction]["recall@1"] >= 0.8, after
    assert aligner.tower("audio").backbone.proj.weight.equal(frozen)
    assert result.best_epoch in (1, 2)
    log = json.loads((tmp_path / "ck" / "train_log.json").read_text())
    assert [r["epoch"] for r in log] == [1, 2]
    assert all("audio->image" in r["val"] for r in log)


def test_training_is_seeded_and_reproducible(corpus_split, tmp_path):
    fit_items, test_items = corpus_split
    vectors = []
    for run in range(2):
        seed_everything(7)
        aligner = create_aligner(AlignerCfg.from_dict(json.loads(json.dumps(SMALL))))
        fit, test = _data(aligner, fit_items[:120], test_items[:60])
        cfg = TrainCfg(epochs=1, steps_per_epoch=5, seed=7, batch_sizes={"text": 16, "image": 32},
                       progress=False, threads=1)
        train(aligner, fit, None, cfg, tmp_path / f"run{run}")
        vectors.append(aligner.embed_texts(["seven", "3"]))
    assert (vectors[0] == vectors[1]).all()


def test_evaluation_never_imports_training():
    """Imports point one way: training uses evaluation, evaluation stands alone."""
    code = ("import sys, crossmodal.evaluation.evaluate, crossmodal.evaluation.dataset; "
            "print([m for m in sys.modules if m.startswith('crossmodal.training')])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_training_and_evaluation_prepare_images_alike(corpus_split):
    """Without augmentation the trainer's image batch is the one evaluation embeds."""
    aligner = load_aligner("starter")
    data = load_dataset([it for it in corpus_split[1] if it.modality == "image"][:20], aligner, progress=False)
    images = data.modalities["image"]
    idx = np.arange(len(images))
    (trained,) = _Batches(aligner, TrainCfg(), 0).image(images, idx, False)
    assert torch.equal(trained, image_batch(aligner, images, idx))
    assert trained.shape == (20, 1, 28, 28)
    with torch.inference_mode():
        direct = aligner.encode_image(trained).numpy()
    np.testing.assert_array_equal(embed_dataset(aligner, images), direct)
    (augmented,) = _Batches(aligner, TrainCfg(), 0).image(images, idx, True)
    assert not torch.equal(augmented, trained)


def _small_list(tmp_path, items, name="items.jsonl"):
    rows = [{"modality": it.modality, "label": it.label,
             **({"text": it.text} if it.modality == "text" else {"path": str(it.path)})} for it in items]
    write_item_list(tmp_path / name, rows)
    return tmp_path / name


def _small_config(tmp_path):
    path = tmp_path / "small.json"
    path.write_text(json.dumps(SMALL))
    return path


def test_train_on_list_splits_trains_and_reports_what_it_skipped(corpus_split, tmp_path):
    items = corpus_split[0][:200]
    listed = _small_list(tmp_path, items)
    cfg = TrainCfg(epochs=1, steps_per_epoch=2, batch_sizes={"text": 16, "image": 16}, progress=False, threads=1)
    result, summary, skipped = train_on_list(listed, tmp_path / "ck", cfg, config=_small_config(tmp_path),
                                             val_fraction=0.2, progress=False)
    audio = sum(it.modality == "audio" for it in items)
    assert audio and len(skipped) == audio and all("no audio tower" in why for _, why in skipped)
    assert summary["skipped"] == audio and summary["best_epoch"] == result.best_epoch == 1
    assert sum(summary["counts"].values()) < len(items) - audio  # a fifth held out for validation
    saved = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert saved["trained_on"]["item_list"] == str(listed.resolve())
    assert saved["aligner"]["name"] == "small-test"

    tuned, _, _ = train_on_list(listed, tmp_path / "tuned", cfg, init=tmp_path / "ck",
                                val_list=_small_list(tmp_path, corpus_split[1][:60], "val.jsonl"), progress=False)
    assert tuned.history[0]["val"]


def test_cross_validate_list_reports_every_fold(corpus_split, tmp_path):
    fit_items = corpus_split[0]
    listed = _small_list(tmp_path, [it for it in fit_items if it.modality == "image"][:100]
                         + [it for it in fit_items if it.modality == "text"])
    cfg = TrainCfg(epochs=1, steps_per_epoch=2, batch_sizes={"text": 16, "image": 16}, progress=False, threads=1)
    summary = cross_validate_list(listed, _small_config(tmp_path), cfg, 2, tmp_path / "folds", progress=False,
                                  val_fraction=0.2)
    r1 = summary["image->text"]["recall@1"]
    assert len(r1["folds"]) == 2 and min(r1["folds"]) <= r1["mean"] <= max(r1["folds"])
    assert (tmp_path / "folds" / "fold1" / "model.safetensors").is_file()


def test_evaluate_model_on_list_names_the_model_and_scores_every_direction(corpus_split, tmp_path):
    items = [it for m in ("image", "audio", "text") for it in corpus_split[1] if it.modality == m][::6]
    report = evaluate_model_on_list(_small_list(tmp_path, items), "starter", "cpu", ["audio->text", "image->text"],
                                    progress=False)
    assert report.model_id == load_aligner("starter").model_id
    assert set(report.metrics) == {"audio->text", "image->text"} and not report.skipped
    assert report.metrics["image->text"]["recall@1"] > 0.8

