"""The commands about models rather than collections: train, bridge, eval, models."""

from __future__ import annotations

import argparse
import sys

from crossmodal.cli.output import EXIT_OK, emit_json, print_fold_summary, print_metrics, report_skipped, warn
from crossmodal.errors import InputError


def _train_cfg(args: argparse.Namespace):
    from crossmodal.training.trainer import TrainCfg

    cfg = TrainCfg(epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, lr=args.lr,
                   weight_decay=args.weight_decay, warmup_steps=args.warmup_steps, seed=args.seed,
                   freeze_backbones=args.freeze_backbones, intra_modal_weight=args.intra_modal_weight,
                   augment=not args.no_augment, device=args.device, threads=args.threads,
                   progress=not args.quiet)
    if args.batch_sizes:
        cfg.batch_sizes.update(args.batch_sizes)
    return cfg


def _cross_validate(args: argparse.Namespace) -> int:
    from crossmodal.training.run import cross_validate_list

    summary = cross_validate_list(args.item_list, args.config, _train_cfg(args), args.folds, args.out,
                                  val_fraction=args.val_fraction, progress=not args.quiet)
    if args.json:
        emit_json(summary)
    else:
        print_fold_summary(args.folds, summary)
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    if args.folds:
        return _cross_validate(args)
    from crossmodal.training.run import train_on_list

    result, summary, skipped = train_on_list(args.item_list, args.out, _train_cfg(args), config=args.config,
                                             init=args.init, val_list=args.val, val_fraction=args.val_fraction,
                                             progress=not args.quiet)
    if args.json:
        emit_json(summary)
    else:
        print(f"best epoch {result.best_epoch} (validation mean cross-modal mAP {result.best_score:.4f})")
        print(f"checkpoint written to {result.checkpoint_dir}")
        print_metrics(result.best_metrics)
    return report_skipped(skipped)


def cmd_bridge(args: argparse.Namespace) -> int:
    from crossmodal.training.bridge import BridgeCfg, bridge_models

    cfg = BridgeCfg(head=args.head, hidden_dim=args.hidden_dim, noise=args.noise, steps=args.steps,
                    batch_size=args.batch_size, lr=args.lr, val_fraction=args.val_fraction, seed=args.seed)
    summary = bridge_models(args.image_text, args.audio_text, args.out, captions=args.captions, cfg=cfg,
                            progress=not args.quiet)
    if args.json:
        emit_json(summary)
        return EXIT_OK
    before = summary["bridge"]["untrained"]["validation"]
    after = summary["bridge"]["trained"]["validation"]
    print(f"bridged {summary['audio_text']} into {summary['image_text']} through {summary['captions']} captions")
    print(f"held-out captions: mean cosine to their target {before['mean_cosine']:.4f} -> {after['mean_cosine']:.4f}, "
          f"recall@1 {before['recall@1']:.4f} -> {after['recall@1']:.4f} (untrained -> trained head)")
    if summary["replaced_audio_tower"]:
        print("the image-text model's own audio tower was replaced by the bridged one")
    print(f"checkpoint written to {summary['checkpoint']} (model {summary['model_id']}); use it with "
          f"`crossmodal index PATH... --collection NAME --model {summary['checkpoint']}`")
    return EXIT_OK


def _directions(text: str | None) -> list[str] | None:
    from crossmodal.evaluation.metrics import ALL_DIRECTIONS

    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in ALL_DIRECTIONS]
    if bad or not names:
        raise InputError(f"--directions: unknown direction {bad[0] if bad else text!r}; use query->gallery names "
                         f"such as {', '.join(ALL_DIRECTIONS[:3])} (quote them in a shell: '->' is a redirect)")
    return names


def cmd_eval(args: argparse.Namespace) -> int:
    if args.folds:
        warn("`eval --folds` is now `train --folds`; running it")
        return _cross_validate(args)
    from crossmodal.evaluation.evaluate import evaluate_model_on_list

    directions = _directions(args.directions)
    report = evaluate_model_on_list(args.item_list, args.model or "starter", args.device, directions,
                                    progress=not args.quiet)
    print(f"crossmodal: model {report.model_id}; items {report.counts}", file=sys.stderr)
    if args.json:
        emit_json(report.metrics)
    else:
        print_metrics(report.metrics)
    return report_skipped(report.skipped)


def cmd_models(args: argparse.Namespace) -> int:
    from crossmodal.core.models import available_models

    listing = available_models(open_clip=args.open_clip)
    if args.json:
        emit_json(listing)
        return EXIT_OK
    print("models for --model (index, search, serve, eval), by route:")
    for route, entry in listing["routes"].items():
        print(f"\n{route}: {entry['what']}")
        for name in entry.get("models", entry.get("configs", [])):
            print(f"  {name}")
        for arch, tags in entry.get("architectures", {}).items():
            print(f"  {arch}" + (f": {', '.join(tags)}" if tags else ""))
        print(f"  example: {entry['example']}")
    return EXIT_OK
