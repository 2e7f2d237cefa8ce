"""The training loop: contrastive alignment of every modality pair, validated every epoch.

Each step draws a batch from every modality (independently, so modalities of very different
sizes can be mixed), embeds them through their towers (with augmentation), and sums the
multi-positive InfoNCE over every pair of modalities, plus a weighted term within each
modality. Backbones listed in ``freeze_backbones`` run once to cache their features, so only
their heads train (fast on CPU). After every epoch the model is evaluated on the validation
set and the best one by mean cross-modal mAP is saved.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from crossmodal.aligner.checkpoint import save_aligner
from crossmodal.aligner.model import Aligner
from crossmodal.errors import ConfigError
from crossmodal.evaluation.dataset import Dataset, ModalityData, image_batch
from crossmodal.evaluation.evaluate import evaluate_dataset, resolve_device
from crossmodal.evaluation.metrics import CROSS_MODAL_DIRECTIONS, mean_cross_modal_map
from crossmodal.training.augment_audio import AudioAugmentCfg, FeatureAugment, audio_training_view
from crossmodal.training.augment_image import ImageAugment, ImageAugmentCfg
from crossmodal.training.augment_text import augment_text
from crossmodal.training.loss import multi_positive_infonce, positive_mask

LOG = logging.getLogger(__name__)


@dataclass
class TrainCfg:
    """Everything that decides a training run; saved into the checkpoint for reproducibility."""

    epochs: int = 12
    steps_per_epoch: int | None = None
    batch_sizes: dict[str, int] = field(default_factory=lambda: {"text": 64, "image": 192, "audio": 96})
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    seed: int = 0
    freeze_backbones: list[str] = field(default_factory=list)
    intra_modal_weight: float = 0.5
    augment: bool = True
    device: str = "auto"
    threads: int | None = None
    progress: bool = True
    audio_augment: AudioAugmentCfg = field(default_factory=AudioAugmentCfg)
    image_augment: ImageAugmentCfg = field(default_factory=ImageAugmentCfg)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    best_epoch: int
    best_score: float
    best_metrics: dict[str, dict[str, float | int]]
    history: list[dict[str, Any]]
    checkpoint_dir: Path


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


class _Sampler:
    """Endless shuffled passes over one modality's items."""

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.n, self.rng = n, rng
        self.order = rng.permutation(n)
        self.pos = 0

    def take(self, count: int) -> np.ndarray:
        out = []
        while count > 0:
            if self.pos >= self.n:
                self.order, self.pos = self.rng.permutation(self.n), 0
            chunk = self.order[self.pos:self.pos + count]
            out.append(chunk)
            self.pos += chunk.size
            count -= chunk.size
        return np.concatenate(out)


def length_buckets(waves: torch.Tensor, lengths: torch.Tensor, bucket: int = 32
                   ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """A padded audio batch as length-sorted buckets cut to their longest clip (padding costs
    compute), and the order that sorted it."""
    order = torch.argsort(lengths, stable=True)
    groups = []
    for sel in order.split(bucket):
        groups.append((waves[sel, :int(lengths[sel].max())], lengths[sel]))
    return groups, order


class _Batches:
    """Turns item indices into model inputs, augmenting them when training."""

    def __init__(self, aligner: Aligner, cfg: TrainCfg, seed: int) -> None:
        self.aligner = aligner
        self.cfg = cfg
        self.rng = np.random.default_rng(seed)
        self.text_rng = random.Random(seed)
        self.image_augment = ImageAugment(cfg.image_augment, seed)
        self.feature_augment = FeatureAugment(cfg.audio_augment, seed)

    def text(self, data: ModalityData, idx: np.ndarray, train: bool) -> tuple:
        texts = [data.inputs[i] for i in idx]
        if train and self.cfg.augment:
            texts = [augment_text(t, self.text_rng) for t in texts]
        return (self.aligner.tokenize(texts),)

    def image(self, data: ModalityData, idx: np.ndarray, train: bool) -> tuple:
        augment = self.image_augment if train and self.cfg.augment else None
        return (image_batch(self.aligner, data, idx, augment),)

    def audio(self, data: ModalityData, idx: np.ndarray, train: bool) -> tuple:
        backbone = self.aligner.tower("audio").backbone
        acfg = backbone.cfg
        augment = self.cfg.audio_augment if train and self.cfg.augment else None
        return backbone.collate([audio_training_view(data.inputs[i], acfg, augment, self.rng) for i in idx])

    def audio_buckets(self, data: ModalityData, idx: np.ndarray, train: bool,
                      bucket: int = 32) -> tuple[list[tuple], np.ndarray]:
        """Audio inputs in length-sorted buckets (padding costs compute), and the reordered indices."""
        groups, order = length_buckets(*self.audio(data, idx, train), bucket)
        return groups, idx[order.numpy()]


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim < 2 or "logit_scale" in name or "embedding" in name:
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _cache_features(aligner: Aligner, data: ModalityData, batches: _Batches, device: torch.device) -> torch.Tensor:
    """Backbone outputs for every item, computed once without augmentation."""
    backbone = aligner.tower(data.modality).backbone
    out = []
    with torch.inference_mode():
        for start in range(0, len(data), 256):
            idx = np.arange(start, min(len(data), start + 256))
            inputs = getattr(batches, data.modality)(data, idx, False)
            out.append(backbone(*[t.to(device) for t in inputs]).float().cpu())
    return torch.cat(out)


def _embed_batch(aligner: Aligner, batches: _Batches, data: ModalityData, idx: np.ndarray,
                 cached: torch.Tensor | None, augment: bool) -> tuple[torch.Tensor, np.ndarray]:
    """Normalised training-time embeddings of one modality's batch, and its indices (audio
    reorders them into length buckets)."""
    tower = aligner.tower(data.modality)
    device = aligner.device
    if cached is not None:
        return F.normalize(tower.head(cached[torch.from_numpy(idx)].to(device)), dim=-1), idx
    if data.modality == "audio":
        buckets, idx = batches.audio_buckets(data, idx, True)
        feature_augment = batches.feature_augment if augment else None
        return torch.cat([tower(w.to(device), n.to(device), feature_augment=feature_augment)
                          for w, n in buckets]), idx
    return tower(*[t.to(device) for t in getattr(batches, data.modality)(data, idx, True)]), idx


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor: linear warm-up, then a cosine down to 0 at ``total`` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train(aligner: Aligner, train_data: Dataset, val_data: Dataset | None, cfg: TrainCfg,
          out_dir: str | Path, trained_on: dict[str, Any] | None = None) -> TrainResult:
    """Train in place and keep the best checkpoint (by validation mean cross-modal mAP) in ``out_dir``."""
    out_dir = Path(out_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    modalities = [m for m in aligner.modalities if m in train_data.modalities]
    if not modalities:
        raise ConfigError("training data has no items for any of the aligner's towers")
    unknown = set(cfg.freeze_backbones) - set(aligner.modalities)
    if unknown:
        raise ConfigError(f"freeze_backbones names modalities without a tower: {sorted(unknown)}")
    # Backbones that are never trained (CLAP, another aligner's tower) are frozen whether asked or not.
    frozen = list(dict.fromkeys([*cfg.freeze_backbones, *(
        m for m in aligner.modalities if getattr(aligner.tower(m).backbone, "always_frozen", False))]))
    aligner.to(device)
    batches = _Batches(aligner, cfg, cfg.seed)
    cached: dict[str, torch.Tensor] = {}
    for m in frozen:
        backbone = aligner.tower(m).backbone
        backbone.requires_grad_(False)
        if m in train_data.modalities:
            LOG.info("caching %s backbone features for %d items", m, len(train_data.modalities[m]))
            cached[m] = _cache_features(aligner, train_data.modalities[m], batches, device)
    steps = cfg.steps_per_epoch or max(
        math.ceil(len(train_data.modalities[m]) / cfg.batch_sizes.get(m, 64)) for m in modalities)
    total = steps * cfg.epochs
    optimizer = torch.optim.AdamW(_param_groups(aligner, cfg.weight_decay), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total, cfg.warmup_steps))
    rng = np.random.default_rng(cfg.seed)
    samplers = {m: _Sampler(len(train_data.modalities[m]), rng) for m in modalities}
    history: list[dict[str, Any]] = []
    best = (-math.inf, 0, {})
    trained_on = dict(trained_on or {})
    trained_on.update({"counts": train_data.counts(), "train_cfg": cfg.to_dict(), "frozen_backbones": frozen})

    for epoch in range(1, cfg.epochs + 1):
        aligner.train()
        for m in frozen:
            aligner.tower(m).backbone.eval()
        started, losses = time.time(), []
        bar = tqdm(range(steps), desc=f"epoch {epoch}/{cfg.epochs}", unit="step", disable=not cfg.progress,
                   leave=False)
        for _ in bar:
            feats, labels, groups = {}, {}, {}
            for m in modalities:
                data = train_data.modalities[m]
                idx = samplers[m].take(min(cfg.batch_sizes.get(m, 64), len(data)))
                feats[m], idx = _embed_batch(aligner, batches, data, idx, cached.get(m), cfg.augment)
                labels[m] = data.labels[torch.from_numpy(idx)].to(device)
                groups[m] = data.groups[torch.from_numpy(idx)].to(device)
            loss = feats[modalities[0]].new_zeros(())
            for a, b in itertools.combinations(modalities, 2):
                pos = positive_mask(labels[a], groups[a], labels[b], groups[b])
                loss = loss + multi_positive_infonce(feats[a], feats[b], pos, aligner.logit_scale)
            if cfg.intra_modal_weight > 0:
                for m in modalities:
                    pos = positive_mask(labels[m], groups[m], labels[m], groups[m])
                    loss = loss + cfg.intra_modal_weight * multi_positive_infonce(
                        feats[m], feats[m], pos, aligner.logit_scale, exclude_diagonal=True)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            aligner.clamp_logit_scale()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", T=f"{aligner.logit_scale.exp().item():.1f}")
        record: dict[str, Any] = {"epoch": epoch, "loss": float(np.mean(losses)),
                                  "logit_scale": float(aligner.logit_scale.detach().exp()),
                                  "seconds": round(time.time() - started, 1)}
        if val_data is not None and val_data.modalities:
            metrics = evaluate_dataset(aligner, val_data)
            score = mean_cross_modal_map(metrics)
            if math.isnan(score):
                score = float(np.nanmean([v["mAP"] for v in metrics.values()])) if metrics else -record["loss"]
            record.update({"val_score": score, "val": metrics})
        else:
            metrics, score = {}, -record["loss"]
        history.append(record)
        summary = ", ".join(f"{d} R@1={metrics[d]['recall@1']:.3f}" for d in CROSS_MODAL_DIRECTIONS if d in metrics)
        LOG.info("epoch %d: loss %.4f, score %.4f %s", epoch, record["loss"], score, summary)
        if score > best[0]:
            best = (score, epoch, metrics)
            aligner.eval()
            save_aligner(aligner.to("cpu"), out_dir, trained_on=trained_on,
                         metrics={"validation": metrics, "epoch": epoch, "score": score})
            aligner.to(device)
        log_tmp = out_dir / "train_log.json.tmp"
        log_tmp.write_text(json.dumps(history, indent=1, default=float) + "\n")
        log_tmp.replace(out_dir / "train_log.json")
    aligner.eval()
    return TrainResult(best[1], best[0], best[2], history, out_dir)
