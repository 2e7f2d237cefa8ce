"""Training on real data from the bundled demo corpus, with real towers at tiny sizes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from crossmodal.aligner import AlignerCfg, create_aligner, load_aligner
from crossmodal.demo.showcase import CORPUS_DIR
from crossmodal.evaluation.manifest_eval import holdout_split
from crossmodal.ingest.item_list import read_item_list
from crossmodal.training.data import IdTable, load_dataset
from crossmodal.training.trainer import (
    TrainCfg,
    _Batches,
    _WeightAverage,
    evaluate_dataset,
    seed_everything,
    train,
)

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
    items = read_item_list(CORPUS_DIR / "manifest.jsonl")
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


def test_audio_items_carry_their_speaker(corpus_split):
    fit_items, _ = corpus_split
    data = load_dataset(fit_items, load_aligner("starter"), progress=False)
    audio = data.modalities["audio"]
    names = [it.meta.get("speaker") for it in fit_items if it.modality == "audio"]
    assert len(set(audio.speakers.tolist())) == len(set(names)) >= 2
    assert (data.modalities["text"].speakers == -1).all()


def test_the_speaker_adversary_pushes_the_embeddings_the_other_way():
    import torch
    from torch.nn import functional as F

    from crossmodal.training.trainer import _speaker_loss

    torch.manual_seed(0)
    adversary = torch.nn.Linear(8, 3)
    speakers = torch.tensor([0, 1, 2, -1, 1])
    feats = torch.randn(5, 8, requires_grad=True)
    _speaker_loss(adversary, feats, speakers, progress=1.0, weight=0.5).backward()
    reversed_grad = feats.grad.clone()
    feats.grad = None
    known = speakers >= 0
    F.cross_entropy(adversary(feats[known]), speakers[known]).backward()
    ramp = 2.0 / (1.0 + torch.exp(torch.tensor(-10.0))) - 1.0
    torch.testing.assert_close(reversed_grad[known], -0.5 * ramp * feats.grad[known])
    assert reversed_grad[3].abs().sum() == 0  # an unknown speaker teaches nothing
    assert float(_speaker_loss(adversary, feats, speakers, progress=0.0, weight=0.5).detach()) == 0.0


def test_training_with_the_speaker_adversary_runs_and_keeps_a_checkpoint(corpus_split, tmp_path):
    aligner, fit, test = _fresh_heads_on_starter(corpus_split)
    cfg = TrainCfg(epochs=1, steps_per_epoch=4, warmup_steps=1, freeze_backbones=["text", "image", "audio"],
                   batch_sizes={"text": 32, "image": 32, "audio": 32}, progress=False, augment=False,
                   speaker_adversarial=1.0)
    head = aligner.tower("audio").head[0].weight.detach().clone()
    result = train(aligner, fit, None, cfg, tmp_path / "ck")
    assert result.history[0]["loss"] == result.history[0]["loss"]  # finite, not NaN
    assert (tmp_path / "ck" / "model.safetensors").is_file()
    assert not aligner.tower("audio").head[0].weight.detach().equal(head)


def test_weight_average_is_the_mean_of_every_step_it_saw():
    seed_everything(3)
    aligner = create_aligner(AlignerCfg.from_dict(json.loads(json.dumps(SMALL))))
    average = _WeightAverage(aligner)
    snapshots = []
    for _ in range(3):
        with torch.no_grad():
            for p in aligner.parameters():
                p.add_(torch.randn_like(p))
        snapshots.append([p.detach().clone() for p in aligner.parameters()])
        average.update(aligner)
    for mean, *steps in zip(average.model.parameters(), *snapshots):
        torch.testing.assert_close(mean, torch.stack(steps).mean(dim=0))


def test_weight_average_measures_batch_norm_again_for_the_averaged_weights(corpus_split):
    """Running statistics gathered for other weights are replaced by ones measured on training
    batches through the averaged model (here the audio CNN's), and the layers' momentum is kept."""
    aligner, fit, _ = _fresh_heads_on_starter(corpus_split)
    average = _WeightAverage(aligner)
    average.update(aligner)
    cfg = TrainCfg(batch_sizes={"text": 16, "image": 16, "audio": 16}, freeze_backbones=["text", "image"])
    norm = average.model.tower("audio").backbone.features[1]
    before = norm.running_mean.clone()
    average.refresh_batch_norm(fit, _Batches(aligner, cfg, 0), cfg, ["audio"], {}, np.random.default_rng(0), steps=5)
    assert int(norm.num_batches_tracked) == 5 and norm.momentum == 0.1
    assert not norm.running_mean.equal(before) and torch.isfinite(norm.running_var).all()
    assert not average.model.training


def test_training_with_weight_averaging_validates_and_keeps_the_average(corpus_split, tmp_path):
    aligner, fit, test = _fresh_heads_on_starter(corpus_split)
    cfg = TrainCfg(epochs=2, steps_per_epoch=3, warmup_steps=1, freeze_backbones=["text", "image"],
                   batch_sizes={"text": 16, "image": 16, "audio": 16}, progress=False, threads=1,
                   weight_average_from=0.5)
    result = train(aligner, fit, test, cfg, tmp_path / "ck")
    assert "averaged_steps" not in result.history[0]
    assert result.history[1]["averaged_steps"] == 3
    saved = load_aligner(tmp_path / "ck").tower("audio").backbone.features[1]
    tracked = int(saved.num_batches_tracked)
    assert tracked == 20 if result.best_epoch == 2 else tracked > 20
