#!/usr/bin/env python
"""Measure the bridge through text alone in the digits world, where both sides train here.

1. Train a separate audio–text model on the digits training split: the starter's audio CNN
   architecture and a text tower of its own, on FSDD recordings 5–49 and the training captions
   (no images).
2. Bridge it into the shipped starter's image–text space through text alone, with the same
   code as `crossmodal bridge`: digit captions (the training phrasings, with the case,
   punctuation and numeral variants training uses) embedded by both text towers. No audio and
   no image is seen by the bridge.
3. Score the bridged model on the official held-out split (FSDD recordings 0–4 against MNIST
   t10k and the 190 held-out captions) with the project's evaluation code, next to the jointly
   trained starter.

    python scripts/measure_text_bridge.py --data ../shared/data

Prints one JSON object: audio->image and audio->text recall@1 and mAP of the bridged model, of
the joint starter, their ratios (the target is at least 0.9), and the audio–text model's own
audio->text figures. ``--reuse`` keeps an audio–text model already trained in the work folder,
to try other bridge settings in a minute.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path

import torch

# Run from a checkout: the research package `starter` lives beside this script.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from starter.digits_world import captions, write_digits_lists

from crossmodal.aligner.checkpoint import CONFIG_FILE
from crossmodal.aligner.registry import create_aligner, load_aligner, read_aligner_config
from crossmodal.errors import CrossmodalError
from crossmodal.evaluation.dataset import IdTable, load_dataset
from crossmodal.evaluation.evaluate import evaluate_list, holdout_split
from crossmodal.ingest.item_list import read_item_list
from crossmodal.training.augment_text import augment_text
from crossmodal.training.bridge import BridgeCfg, bridge_models
from crossmodal.training.trainer import TrainCfg, seed_everything, train

DIRECTIONS = ["audio->image", "audio->text"]


def train_audio_text(train_list: Path, out: Path, cfg: TrainCfg, progress: bool) -> None:
    """The starter's text and audio towers (its architecture, not its weights), trained from
    scratch on the audio and text items of the training split."""
    arch = read_aligner_config("starter-digits")
    arch.name, arch.description = "audio-text-digits", "starter architecture, text and audio towers only"
    arch.towers.pop("image")
    items = [i for i in read_item_list(train_list) if i.modality in ("audio", "text")]
    fit_items, val_items = holdout_split(items, 0.05, cfg.seed)
    seed_everything(cfg.seed)
    aligner = create_aligner(arch)
    labels = IdTable()
    fit = load_dataset(fit_items, aligner, labels, progress=progress)
    val = load_dataset(val_items, aligner, labels, progress=progress)
    train(aligner, fit, val, cfg, out, {"data": "FSDD recordings 5-49 + training captions (no images)"})


def digit_captions(path: Path, variants: int, seed: int) -> int:
    """The training phrasings of the ten digits, each with ``variants`` augmented spellings, one
    per line (the held-out phrasings stay unseen: they are the evaluation's text gallery)."""
    rng = random.Random(seed)
    texts = [t for t, _ in captions("train")]
    lines = list(dict.fromkeys(texts + [augment_text(t, rng) for t in texts for _ in range(variants)]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def _figures(metrics: dict) -> dict:
    return {d: {"recall@1": round(metrics[d]["recall@1"], 4), "mAP": round(metrics[d]["mAP"], 4)} for d in DIRECTIONS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder holding mnist/ and fsdd/recordings/")
    parser.add_argument("--work", type=Path, default=Path("build/bridge-digits"),
                        help="item lists, the audio-text model and the bridged model (default: build/bridge-digits)")
    parser.add_argument("--image-text", default="starter", help="the model bridged into (default: starter)")
    parser.add_argument("--epochs", type=int, default=5, help="audio-text training epochs (default: 5)")
    parser.add_argument("--steps-per-epoch", type=int, default=150, help="(default: 150)")
    parser.add_argument("--reuse", action="store_true", help="keep an audio-text model already in --work")
    parser.add_argument("--variants", type=int, default=4, help="augmented spellings per caption (default: 4)")
    parser.add_argument("--noise", type=float, default=1.0, help="bridge noise (default: 1.0)")
    parser.add_argument("--head", choices=["mlp", "linear"], default="mlp")
    parser.add_argument("--hidden-dim", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3000, help="bridge training steps (default: 3000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default: 1; more threads than free cores slow training down)")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    progress = not args.quiet
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.time()
    try:
        lists = write_digits_lists(args.data, args.work / "data", mnist_train_limit=0)
        audio_text = args.work / "audio-text"
        if not (args.reuse and (audio_text / CONFIG_FILE).is_file()):
            cfg = TrainCfg(epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, seed=args.seed,
                           threads=args.threads, device="cpu", progress=progress)
            train_audio_text(lists["train"], audio_text, cfg, progress)
        train_minutes = (time.time() - started) / 60
        caption_file = args.work / "digit-captions.txt"
        count = digit_captions(caption_file, args.variants, args.seed)
        bridge_cfg = BridgeCfg(head=args.head, hidden_dim=args.hidden_dim, noise=args.noise, steps=args.steps,
                               seed=args.seed)
        summary = bridge_models(args.image_text, audio_text, args.work / "bridged", caption_file, bridge_cfg,
                                progress)
        bridged = evaluate_list(lists["eval"], load_aligner(args.work / "bridged"), DIRECTIONS, progress).metrics
        joint = evaluate_list(lists["eval"], load_aligner(args.image_text), DIRECTIONS, progress).metrics
        own = evaluate_list(lists["eval"], load_aligner(audio_text), ["audio->text"], progress).metrics
    except CrossmodalError as exc:
        print(f"measure_text_bridge: error: {exc}", file=sys.stderr)
        return 1
    result = {
        "bridged": _figures(bridged), "joint": _figures(joint),
        "ratio": {d: {k: round(bridged[d][k] / joint[d][k], 4) for k in ("recall@1", "mAP")} for d in DIRECTIONS},
        "audio_text_model_own": {"audio->text": {k: round(own["audio->text"][k], 4) for k in ("recall@1", "mAP")}},
        "captions": count, "bridge": summary["bridge"], "bridge_cfg": bridge_cfg.__dict__,
        "audio_text_training": {"epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch,
                                "reused": bool(args.reuse), "minutes": round(train_minutes, 1)},
        "total_minutes": round((time.time() - started) / 60, 1),
        "queries": {d: bridged[d].get("queries") for d in DIRECTIONS},
    }
    json.dump(result, sys.stdout, indent=1, default=float)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
