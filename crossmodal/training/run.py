"""One call per training job (a run, or k-fold cross-validation), so a front end such as the
command line only parses its options and prints the result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crossmodal.aligner.registry import create_aligner, load_aligner, read_aligner_config
from crossmodal.evaluation.dataset import IdTable, load_dataset
from crossmodal.evaluation.evaluate import holdout_split
from crossmodal.ingest.item_list import read_item_list
from crossmodal.training.crossval import cross_validate
from crossmodal.training.trainer import TrainCfg, TrainResult, seed_everything, train


def train_on_list(list_path: str | Path, out_dir: str | Path, cfg: TrainCfg, *, config: str | Path = "starter-digits",
                  init: str | Path | None = None, val_list: str | Path | None = None, val_fraction: float = 0.05,
                  progress: bool = True) -> tuple[TrainResult, dict[str, Any], list[tuple[str, str]]]:
    """Train an aligner on a JSONL item list and keep its best epoch in ``out_dir``.

    The aligner is a fresh ``config`` or, to fine-tune, the trained checkpoint ``init``.
    Validation uses ``val_list`` when given, else a group-aware ``val_fraction`` of the list.
    Returns the result, a summary for printing, and the (source, reason) of every skipped item.
    """
    seed_everything(cfg.seed)
    items = read_item_list(list_path)
    if val_list:
        train_items, val_items = items, read_item_list(val_list)
    else:
        train_items, val_items = holdout_split(items, val_fraction, cfg.seed)
    aligner = load_aligner(init) if init else create_aligner(config)
    labels = IdTable()
    train_data = load_dataset(train_items, aligner, labels, progress=progress)
    val_data = load_dataset(val_items, aligner, labels, progress=progress) if val_items else None
    skipped = train_data.skipped + (val_data.skipped if val_data else [])
    trained_on = {"item_list": str(Path(list_path).resolve()),
                  "validation": str(val_list or f"{val_fraction:.0%} of the training item list")}
    result = train(aligner, train_data, val_data, cfg, out_dir, trained_on)
    summary = {"checkpoint": str(result.checkpoint_dir), "best_epoch": result.best_epoch,
               "best_score": result.best_score, "validation": result.best_metrics,
               "counts": train_data.counts(), "skipped": len(skipped)}
    return result, summary, skipped


def cross_validate_list(list_path: str | Path, config: str | Path, cfg: TrainCfg, folds: int,
                        out_dir: str | Path, progress: bool = True, val_fraction: float = 0.1) -> dict[str, Any]:
    """`cross_validate` a fresh ``config`` on a JSONL item list; fold checkpoints go under ``out_dir``
    and each fold validates on ``val_fraction`` of its training part."""
    return cross_validate(read_item_list(list_path), read_aligner_config(config), cfg, folds, out_dir,
                          val_fraction=val_fraction, progress=progress)
