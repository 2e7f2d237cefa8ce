"""The training loop: contrastive alignment of every modality pair, validated every epoch.

Each step draws a batch from every modality (independently, so modalities of very different
sizes can be mixed), embeds them through their towers (with augmentation), and sums the
multi-positive InfoNCE over every pair of modalities, plus a weighted term within each
modality. Backbones listed in ``freeze_backbones`` run once to cache their features, so only
their heads train (fast on CPU). After every epoch the model (or, with ``weight_average_from``,
the running average of its weights) is evaluated on the validation set and the best one by
mean cross-modal mAP is saved.
"""

from __future__ import annotations

import copy
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
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from crossmodal.aligner.checkpoint import save_aligner
from crossmodal.aligner.image_towers import DigitCnnBackbone
from crossmodal.aligner.model import Aligner
from crossmodal.errors import ConfigError
from crossmodal.evaluation.metrics import CROSS_MODAL_DIRECTIONS, all_directions, mean_cross_modal_map
from crossmodal.media import Waveform
from crossmodal.training.augment_audio import AudioAugmentCfg, FeatureAugment, StyleMix, audio_training_view
from crossmodal.training.augment_image import ImageAugment, ImageAugmentCfg
from crossmodal.training.augment_text import augment_text
from crossmodal.training.data import Dataset, ModalityData
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
    speaker_adversarial: float = 0.0
    """Weight of a speaker classifier on the audio embeddings whose gradient is reversed
    (domain-adversarial training): the audio tower is pushed to embed the word, not the
    voice. It needs ``meta["speaker"]`` on the audio items; 0 turns it off. It is off by
    default: at 1.0, leaving one speaker out (audio→image / audio→text recall@1), george went
    from 0.914 / 0.932 to 0.916 / 0.938, jackson from 0.892 / 0.906 to 0.908 / 0.910, nicolas
    from 0.866 / 0.882 to 0.846 / 0.874 and yweweler from 0.874 / 0.890 to 0.896 / 0.890:
    within run-to-run noise."""
    weight_average_from: float = 0.0
    """Average the weights of every step from this fraction of training on (stochastic weight
    averaging), and validate and keep the averaged model from then on; 0 turns it off. An
    average over a stretch of training sits in a flatter minimum than any one step, which is
    what carries over to data unlike the training set. Off by default: from 0.5 on, leaving one
    speaker out, jackson went from 0.892 / 0.906 to 0.894 / 0.906 and nicolas from 0.866 /
    0.882 to 0.862 / 0.878 (audio→image / audio→text recall@1); FSDD's official test split
    gained about a point."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    best_epoch: int
    best_score: float
    best_metrics: dict[str, dict[str, float | int]]
    history: list[dict[str, Any]]
    checkpoint_dir: Path


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
        self.style_mix = StyleMix(cfg.audio_augment, seed + 1)

    def text(self, data: ModalityData, idx: np.ndarray, train: bool) -> tuple:
        texts = [data.inputs[i] for i in idx]
        if train and self.cfg.augment:
            texts = [augment_text(t, self.text_rng) for t in texts]
        return (self.aligner.tokenize(texts),)

    def image(self, data: ModalityData, idx: np.ndarray, train: bool) -> tuple:
        backbone = self.aligner.tower("image").backbone
        batch = data.inputs[torch.from_numpy(idx)]
        if not isinstance(backbone, DigitCnnBackbone):
            return (batch,)
        glyphs = batch.float().div(255.0).unsqueeze(1)
        if train and self.cfg.augment:
            glyphs = self.image_augment(glyphs)
        return ((glyphs - backbone.MEAN) / backbone.STD,)

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


@torch.inference_mode()
def embed_dataset(aligner: Aligner, data: ModalityData, batch_size: int = 256) -> np.ndarray:
    """Normalised vectors for every item, exactly as inference computes them."""
    aligner.eval()
    if data.modality == "audio":
        rate = aligner.tower("audio").backbone.cfg.sample_rate
        return aligner.embed_audio_clips([Waveform(x, rate) for x in data.inputs], batch_size)
    if data.modality == "text":
        return aligner.embed_texts(list(data.inputs), batch_size)
    batches = _Batches(aligner, TrainCfg(augment=False), 0)
    out = []
    for start in range(0, len(data), batch_size):
        idx = np.arange(start, min(len(data), start + batch_size))
        (pixels,) = batches.image(data, idx, False)
        out.append(aligner.encode_image(pixels.to(aligner.device)).float().cpu().numpy())
    return np.concatenate(out)


def evaluate_dataset(aligner: Aligner, data: Dataset, directions: list[str] | None = None) -> dict:
    embeddings = {m: embed_dataset(aligner, d) for m, d in data.modalities.items()}
    labels = {m: d.labels.numpy() for m, d in data.modalities.items()}
    return all_directions(embeddings, labels, directions)


class _ReverseGradient(torch.autograd.Function):
    """Identity forward, negated gradient backward: what the adversary learns, the tower unlearns."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return -grad


def _speaker_adversary(aligner: Aligner, data: Dataset, cfg: TrainCfg, device: torch.device) -> nn.Module | None:
    """A small speaker classifier over audio embeddings, when asked for and two or more speakers are known."""
    audio = data.modalities.get("audio")
    if cfg.speaker_adversarial <= 0 or audio is None or audio.speakers is None:
        return None
    count = int(audio.speakers.max()) + 1 if len(audio) else 0
    if count < 2:
        LOG.warning("speaker_adversarial needs audio items from two or more speakers (meta 'speaker'); off")
        return None
    return nn.Sequential(nn.Linear(aligner.embed_dim, 128), nn.ReLU(), nn.Linear(128, count)).to(device)


def _speaker_loss(adversary: nn.Module, feats: torch.Tensor, speakers: torch.Tensor, progress: float,
                  weight: float) -> torch.Tensor:
    """Cross-entropy of the adversary on reversed-gradient embeddings, its weight ramped up
    from 0 as training goes (as in domain-adversarial training), so the words are learnt first."""
    known = speakers >= 0
    if not bool(known.any()):
        return feats.new_zeros(())
    ramp = 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0
    logits = adversary(_ReverseGradient.apply(feats[known]))
    return weight * ramp * F.cross_entropy(logits, speakers[known])


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
        extra = {"feature_augment": batches.feature_augment, "style_mix": batches.style_mix} if augment else {}
        return torch.cat([tower(w.to(device), n.to(device), **extra) for w, n in buckets]), idx
    return tower(*[t.to(device) for t in getattr(batches, data.modality)(data, idx, True)]), idx


class _WeightAverage:
    """Running mean of a model's parameters, with batch-norm statistics recomputed for the mean.

    Averaged weights never produced the activations that the running batch-norm statistics
    were gathered on, so before the average is evaluated those statistics are measured again
    on training batches, the way they were made (train mode, augmentation on)."""

    def __init__(self, aligner: Aligner) -> None:
        self.model = copy.deepcopy(aligner)
        self.count = 0

    @torch.no_grad()
    def update(self, aligner: Aligner) -> None:
        self.count += 1
        for mean, current in zip(self.model.parameters(), aligner.parameters()):
            mean.lerp_(current.detach(), 1.0 / self.count)

    @torch.no_grad()
    def refresh_batch_norm(self, data: Dataset, batches: _Batches, cfg: TrainCfg, modalities: list[str],
                           cached: dict[str, torch.Tensor], rng: np.random.Generator, steps: int = 20) -> None:
        norms = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        self.model.train()
        for m in cfg.freeze_backbones:
            self.model.tower(m).backbone.eval()
        for _ in range(steps):
            for m in modalities:
                items = data.modalities[m]
                idx = rng.choice(len(items), size=min(cfg.batch_sizes.get(m, 64), len(items)), replace=False)
                _embed_batch(self.model, batches, items, idx, cached.get(m), cfg.augment)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        self.model.eval()


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
    aligner.to(device)
    batches = _Batches(aligner, cfg, cfg.seed)
    cached: dict[str, torch.Tensor] = {}
    for m in cfg.freeze_backbones:
        backbone = aligner.tower(m).backbone
        backbone.requires_grad_(False)
        if m in train_data.modalities:
            LOG.info("caching %s backbone features for %d items", m, len(train_data.modalities[m]))
            cached[m] = _cache_features(aligner, train_data.modalities[m], batches, device)
    steps = cfg.steps_per_epoch or max(
        math.ceil(len(train_data.modalities[m]) / cfg.batch_sizes.get(m, 64)) for m in modalities)
    total = steps * cfg.epochs
    adversary = _speaker_adversary(aligner, train_data, cfg, device)
    groups_of_params = _param_groups(aligner, cfg.weight_decay)
    if adversary is not None:
        groups_of_params.append({"params": list(adversary.parameters()), "weight_decay": cfg.weight_decay})
    optimizer = torch.optim.AdamW(groups_of_params, lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total, cfg.warmup_steps))
    average = _WeightAverage(aligner) if 0 < cfg.weight_average_from < 1 else None
    average_from = int(cfg.weight_average_from * total)
    rng = np.random.default_rng(cfg.seed)
    samplers = {m: _Sampler(len(train_data.modalities[m]), rng) for m in modalities}
    history: list[dict[str, Any]] = []
    best = (-math.inf, 0, {})
    trained_on = dict(trained_on or {})
    trained_on.update({"counts": train_data.counts(), "train_cfg": cfg.to_dict()})

    for epoch in range(1, cfg.epochs + 1):
        aligner.train()
        for m in cfg.freeze_backbones:
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
                if m == "audio" and adversary is not None and data.speakers is not None:
                    speakers = data.speakers[torch.from_numpy(idx)].to(device)
            loss = feats[modalities[0]].new_zeros(())
            if adversary is not None:
                loss = loss + _speaker_loss(adversary, feats["audio"], speakers, scheduler.last_epoch / total,
                                            cfg.speaker_adversarial)
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
            if average is not None and scheduler.last_epoch > average_from:
                average.update(aligner)
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", T=f"{aligner.logit_scale.exp().item():.1f}")
        record: dict[str, Any] = {"epoch": epoch, "loss": float(np.mean(losses)),
                                  "logit_scale": float(aligner.logit_scale.detach().exp()),
                                  "seconds": round(time.time() - started, 1)}
        candidate = aligner
        if average is not None and average.count:
            average.refresh_batch_norm(train_data, batches, cfg, modalities, cached,
                                       np.random.default_rng([cfg.seed, epoch]))
            candidate = average.model
            record["averaged_steps"] = average.count
        if val_data is not None and val_data.modalities:
            metrics = evaluate_dataset(candidate, val_data)
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
            candidate.eval()
            save_aligner(candidate.to("cpu"), out_dir, trained_on=trained_on,
                         metrics={"validation": metrics, "epoch": epoch, "score": score})
            candidate.to(device)
        log_tmp = out_dir / "train_log.json.tmp"
        log_tmp.write_text(json.dumps(history, indent=1, default=float) + "\n")
        log_tmp.replace(out_dir / "train_log.json")
    aligner.eval()
    return TrainResult(best[1], best[0], best[2], history, out_dir)
