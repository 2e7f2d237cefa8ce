"""K-fold cross-validation of training: how well a recipe generalises, not one model's score.

Each fold trains a fresh aligner on the other folds (keeping part of them for validation) and
scores it on its own items; groups never straddle folds, so no test item has a near-copy in
training.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal.aligner.config import AlignerCfg
from crossmodal.aligner.model import Aligner
from crossmodal.errors import ConfigError
from crossmodal.evaluation.dataset import IdTable, load_dataset
from crossmodal.evaluation.evaluate import Metrics, evaluate_dataset, holdout_split, split_units
from crossmodal.evaluation.metrics import ALL_DIRECTIONS
from crossmodal.ingest.item_list import ListItem
from crossmodal.training.trainer import TrainCfg, seed_everything, train

LOG = logging.getLogger(__name__)
SUMMARY_METRICS = ("recall@1", "recall@5", "recall@10", "mAP")


def summarise_folds(per_fold: Sequence[Metrics]) -> dict[str, Any]:
    """Per direction and metric: the mean, the spread and each fold's value."""
    summary: dict[str, Any] = {}
    for direction in ALL_DIRECTIONS:
        runs = [m[direction] for m in per_fold if direction in m]
        if not runs:
            continue
        summary[direction] = {
            metric: {"mean": float(np.mean([r[metric] for r in runs])),
                     "std": float(np.std([r[metric] for r in runs])),
                     "folds": [float(r[metric]) for r in runs]}
            for metric in SUMMARY_METRICS}
    return summary


def cross_validate(items: Sequence[ListItem], aligner_cfg: AlignerCfg, train_cfg: TrainCfg, folds: int,
                   out_dir: str | Path, val_fraction: float = 0.1, progress: bool = True) -> dict[str, Any]:
    """K-fold training and evaluation; per direction and metric, the mean, spread and fold values."""
    if folds < 2:
        raise ConfigError("cross-validation needs at least 2 folds")
    assignment = split_units(items, folds, train_cfg.seed)
    per_fold: list[Metrics] = []
    for fold in range(folds):
        test_items = [it for it, f in zip(items, assignment) if f == fold]
        rest = [it for it, f in zip(items, assignment) if f != fold]
        fit_items, val_items = holdout_split(rest, val_fraction, train_cfg.seed + fold)
        seed_everything(train_cfg.seed + fold)
        aligner = Aligner(aligner_cfg)
        labels = IdTable()
        fit = load_dataset(fit_items, aligner, labels, progress=progress)
        val = load_dataset(val_items, aligner, labels, progress=progress) if val_items else None
        test = load_dataset(test_items, aligner, labels, progress=progress)
        train(aligner, fit, val, train_cfg, Path(out_dir) / f"fold{fold}")
        per_fold.append(evaluate_dataset(aligner, test))
        LOG.info("fold %d/%d done", fold + 1, folds)
    return summarise_folds(per_fold)
