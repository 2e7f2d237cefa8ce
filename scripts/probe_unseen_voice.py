#!/usr/bin/env python
"""A fast proxy for the leave-one-speaker-out run: the audio tower alone, on one unseen voice.

The full leave-one-speaker-out run (`train_starter_model.py --holdout-speakers S`) trains all
three towers and takes about 17 minutes here. Whether an audio front end, tower or
augmentation helps an unseen voice shows up in about 4 minutes: this trains only the config's
audio backbone, with a cosine classifier over the ten digits, on the other speakers' FSDD
training takes (5-49) with the recipe's augmentation, then classifies every recording of the
held-out speaker through the inference path (silence trimmed, windows averaged).

It shows the same confusions as the full run and lands near its audio->text recall@1, but
one probe moves by up to 3 points with the seed: a change has to win by more than that, on
more than one seed, before a full run is worth its time. The figures it gave are in
docs/research/unseen-voices.md.

    python scripts/probe_unseen_voice.py --data ../shared/data --holdout nicolas \\
        --audio-augment '{"speed": [0.75, 1.3]}'

Prints one JSON object: accuracy, the most frequent confusions (true digit, heard as, count).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

# Run from a checkout: the research package `starter` lives beside this script.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from starter.digits_world import FSDD_TRAIN_INDEXES, fsdd_recordings, fsdd_speakers

from crossmodal.aligner.audio_towers import AudioCnnBackbone, to_model_rate
from crossmodal.aligner.config import AudioCnnCfg
from crossmodal.aligner.registry import create_aligner
from crossmodal.errors import CrossmodalError
from crossmodal.ingest.decode import decode_audio
from crossmodal.media import Waveform
from crossmodal.training.augment_audio import AudioAugmentCfg, FeatureAugment, audio_training_view
from crossmodal.training.trainer import length_buckets, warmup_cosine

Clip = tuple[np.ndarray, int]


def load_clips(data: Path, holdout: str, sample_rate: int) -> tuple[list[Clip], list[Clip]]:
    """(training clips of the other speakers, every clip of the held-out one), at the model rate."""
    recs = fsdd_recordings(data / "fsdd" / "recordings")
    if holdout not in fsdd_speakers(recs):
        raise CrossmodalError(f"--holdout {holdout!r}: FSDD speakers are {fsdd_speakers(recs)}")
    train, test = [], []
    for rec in recs:
        if rec.speaker != holdout and rec.index not in FSDD_TRAIN_INDEXES:
            continue
        clip = (to_model_rate(decode_audio(rec.path), sample_rate, str(rec.path)), int(rec.digit))
        (test if rec.speaker == holdout else train).append(clip)
    return train, test


class DigitProbe(nn.Module):
    """Audio backbone plus a cosine classifier: the shape of matching against ten class prototypes."""

    def __init__(self, cfg: AudioCnnCfg, scale: float) -> None:
        super().__init__()
        self.backbone = AudioCnnBackbone(cfg)
        self.prototypes = nn.Parameter(torch.randn(10, cfg.output_dim) * 0.02)
        self.scale = scale

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor,
                feature_augment: FeatureAugment | None = None) -> torch.Tensor:
        feats = self.backbone(waves, lengths, feature_augment=feature_augment)
        return self.scale * F.normalize(feats, dim=-1) @ F.normalize(self.prototypes, dim=-1).T


def train_probe(probe: DigitProbe, train: list[Clip], augment: AudioAugmentCfg, steps: int, batch: int,
                lr: float, seed: int, progress: bool) -> None:
    cfg = probe.backbone.cfg
    rng = np.random.default_rng(seed)
    feature_augment = FeatureAugment(augment, seed)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=0.05)
    warmup = min(100, steps // 5 + 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, steps, warmup))
    probe.train()
    for _ in tqdm(range(steps), desc="probe", unit="step", disable=not progress):
        picks = rng.choice(len(train), size=min(batch, len(train)), replace=False)
        chunks = [audio_training_view(train[i][0], cfg, augment, rng) for i in picks]
        digits = [train[i][1] for i in picks]
        buckets, order = length_buckets(*probe.backbone.collate(chunks))
        logits = torch.cat([probe(waves, lengths, feature_augment) for waves, lengths in buckets])
        loss = F.cross_entropy(logits, torch.tensor(digits)[order])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()


@torch.inference_mode()
def confusion(probe: DigitProbe, clips: list[Clip]) -> np.ndarray:
    """(true digit, predicted digit) counts, each clip scored as inference embeds it."""
    probe.eval()
    backbone = probe.backbone
    counts = np.zeros((10, 10), dtype=np.int64)
    for samples, digit in clips:
        windows = backbone.windows(Waveform(samples, backbone.cfg.sample_rate))
        waves, lengths = backbone.collate([w.samples for w in windows])
        feats = F.normalize(backbone(waves, lengths), dim=-1).mean(dim=0, keepdim=True)
        scores = F.normalize(feats, dim=-1) @ F.normalize(probe.prototypes, dim=-1).T
        counts[digit, int(scores.argmax())] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder holding fsdd/recordings/")
    parser.add_argument("--holdout", required=True, help="the FSDD speaker never trained on")
    parser.add_argument("--config", default="starter-digits", help="aligner config whose audio backbone is probed")
    parser.add_argument("--audio-augment", default=None, help="JSON object overriding audio augmentation")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=96)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--scale", type=float, default=16.0, help="logit scale of the cosine classifier")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    try:
        augment = AudioAugmentCfg()
        if args.audio_augment:
            changes = json.loads(args.audio_augment)
            augment = replace(augment, **{k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()})
        cfg = create_aligner(args.config).tower("audio").backbone.cfg
        train, test = load_clips(args.data, args.holdout, cfg.sample_rate)
    except (json.JSONDecodeError, TypeError) as exc:
        print(f"probe_unseen_voice: error: --audio-augment: {exc}", file=sys.stderr)
        return 2
    except (CrossmodalError, KeyError) as exc:
        print(f"probe_unseen_voice: error: {exc}", file=sys.stderr)
        return 1
    if not train or not test:
        print("probe_unseen_voice: error: no training or no held-out recordings found", file=sys.stderr)
        return 1
    probe = DigitProbe(cfg, args.scale)
    started = time.time()
    train_probe(probe, train, augment, args.steps, args.batch, args.lr, args.seed, not args.quiet)
    counts = confusion(probe, test)
    errors = [(int(t), int(p), int(counts[t, p])) for t, p in zip(*np.nonzero(counts)) if t != p]
    summary = {"holdout": args.holdout, "accuracy": round(float(np.trace(counts) / counts.sum()), 4),
               "clips": int(counts.sum()), "confusions": sorted(errors, key=lambda e: -e[2])[:8],
               "seconds": round(time.time() - started, 1), "steps": args.steps, "seed": args.seed}
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
