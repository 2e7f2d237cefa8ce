#!/usr/bin/env python
"""Train the bundled starter model (or a leave-speakers-out variant) from the digits world.

Ships the model:   python scripts/train_starter_model.py --data ../shared/data
New languages:    python scripts/train_starter_model.py --data ../shared/data --text-only-from starter \\
                       --out build/starter-text
Unseen speakers:   python scripts/train_starter_model.py --data ../shared/data \\
                       --holdout-speakers lucas --out build/loso-lucas --epochs 6
Prints a JSON summary with the held-out metrics; they are also stored in the checkpoint config.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import torch

# Run from a checkout: the research package `starter` lives beside this script.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from starter.recipe import train_digits_aligner
from starter.text_retrain import retrain_text_tower

from crossmodal.aligner.registry import PRETRAINED_DIR
from crossmodal.errors import CrossmodalError
from crossmodal.training.trainer import TrainCfg

DESCRIPTION = ("Small from-scratch aligner for the digits world (MNIST, spoken digits, digit captions in English, "
               "Chinese, Spanish, French and German).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder holding mnist/ and fsdd/recordings/")
    parser.add_argument("--out", type=Path, default=PRETRAINED_DIR / "starter", help="checkpoint folder")
    parser.add_argument("--work", type=Path, default=Path("build/digits"), help="PNGs and item lists")
    parser.add_argument("--config", default="starter-digits", help="aligner config name or JSON path")
    parser.add_argument("--holdout-speakers", default="", help="comma-separated FSDD speakers to leave out")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps-per-epoch", type=int, default=250)
    parser.add_argument("--typeset-per-digit", type=int, default=300)
    parser.add_argument("--mnist-train-limit", type=int, default=None)
    parser.add_argument("--tts-voices", type=int, default=0,
                        help="synthetic speakers (espeak-ng/flite/festival) that join the training audio")
    parser.add_argument("--batch-sizes", default=None, help='JSON object, e.g. {"image": 64}')
    parser.add_argument("--audio-augment", default=None,
                        help='JSON object overriding audio augmentation, e.g. {"speed": [0.75, 1.3]}')
    parser.add_argument("--text-only-from", default=None, metavar="MODEL",
                        help="retrain only the text tower of MODEL (a checkpoint or shipped name) on every "
                             "language's captions, its image and audio towers kept (scripts/starter/text_retrain.py)")
    parser.add_argument("--context-length", type=int, default=64, help="text context with --text-only-from")
    parser.add_argument("--text-steps", type=int, default=1200, help="steps with --text-only-from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    cfg = TrainCfg(epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, seed=args.seed,
                   threads=args.threads, device=args.device, progress=not args.quiet)
    if args.batch_sizes:
        cfg.batch_sizes.update(json.loads(args.batch_sizes))
    if args.audio_augment:
        try:
            changes = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(args.audio_augment).items()}
            cfg.audio_augment = replace(cfg.audio_augment, **changes)
        except (json.JSONDecodeError, TypeError, AttributeError) as exc:
            print(f"train_starter_model: error: --audio-augment: {exc}", file=sys.stderr)
            return 2
    speakers = [s for s in args.holdout_speakers.split(",") if s]
    try:
        if args.text_only_from:
            if args.threads:
                torch.set_num_threads(args.threads)
            summary = retrain_text_tower(args.data, args.text_only_from, args.out, args.work,
                                         context_length=args.context_length, steps=args.text_steps, seed=args.seed,
                                         typeset_per_digit=args.typeset_per_digit,
                                         description=DESCRIPTION, progress=not args.quiet)
            json.dump(summary, sys.stdout, indent=1, default=float)
            sys.stdout.write("\n")
            return 0
        summary = train_digits_aligner(args.data, args.out, args.work, cfg, config=args.config,
                                       holdout_speakers=speakers,
                                       typeset_per_digit=args.typeset_per_digit,
                                       mnist_train_limit=args.mnist_train_limit, tts_voices=args.tts_voices,
                                       progress=not args.quiet)
    except CrossmodalError as exc:
        print(f"train_starter_model: error: {exc}", file=sys.stderr)
        return 1
    json.dump(summary, sys.stdout, indent=1, default=float)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
