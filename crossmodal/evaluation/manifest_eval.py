"""`crossmodal eval`: score an aligner on a labelled manifest, or cross-validate training on one."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal.aligner.config import AlignerCfg
from crossmodal.aligner.model import Aligner
from crossmodal.evaluation.metrics import ALL_DIRECTIONS
from crossmodal.ingest.item_list import ListItem, read_item_list
from crossmodal.training.data import IdTable, load_dataset
from crossmodal.training.trainer import TrainCfg, evaluate_dataset, seed_everything, train

LOG = logging.getLogger(__name__)


@dataclass
class EvalReport:
    metrics: dict[str, dict[str, float | int]]
    counts: dict[str, int]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def evaluate_items(items: Sequence[ListItem], aligner: Aligner, directions: list[str] | None = None,
                   progress: bool = True) -> EvalReport:
    """Every item queries the gallery of every modality; relevant means same label."""
    unlabelled = sum(1 for it in items if it.label is None)
    if unlabelled:
        LOG.warning("%d item(s) have no label and can only count as non-relevant", unlabelled)
    data = load_dataset(items, aligner, progress=progress)
    return EvalReport(evaluate_dataset(aligner, data, directions or ALL_DIRECTIONS), data.counts(), data.skipped)


def evaluate_manifest(manifest: str | Path, aligner: Aligner, directions: list[str] | None = None,
                      progress: bool = True) -> EvalReport:
    return evaluate_items(read_item_list(manifest), aligner, directions, progress)


def _unit_key(item: ListItem, position: int) -> str:
    return f"g:{item.group}" if item.group is not None else f"i:{position}"


def split_units(items: Sequence[ListItem], folds: int, seed: int) -> list[int]:
    """Fold number per item: groups never straddle folds, each modality spreads evenly."""
    rng = np.random.default_rng(seed)
    units: dict[str, list[int]] = {}
    for pos, item in enumerate(items):
        units.setdefault(_unit_key(item, pos), []).append(pos)
    by_modality: dict[str, list[str]] = {}
    for key, members in units.items():
        by_modality.setdefault(items[members[0]].modality, []).append(key)
    assignment = [0] * len(items)
    offset = 0
    for modality in sorted(by_modality):
        keys = by_modality[modality]
        for rank, k in enumerate(rng.permutation(len(keys))):
            for pos in units[keys[k]]:
                assignment[pos] = (rank + offset) % folds
        offset += len(keys)
    return assignment


def holdout_split(items: Sequence[ListItem], fraction: float, seed: int
                  ) -> tuple[list[ListItem], list[ListItem]]:
    """A group-aware random split for validation during training."""
    if fraction <= 0:
        return list(items), []
    folds = max(2, int(round(1 / fraction)))
    assignment = split_units(items, folds, seed)
    train_items = [it for it, f in zip(items, assignment) if f != 0]
    val_items = [it for it, f in zip(items, assignment) if f == 0]
    return train_items, val_items


def cross_validate(items: Sequence[ListItem], aligner_cfg: AlignerCfg, train_cfg: TrainCfg, folds: int,
                   out_dir: str | Path, val_fraction: float = 0.1, progress: bool = True) -> dict[str, Any]:
    """K-fold training and evaluation; per direction and metric, the mean, spread and fold values."""
    if folds < 2:
        raise ValueError("--folds needs at least 2")
    assignment = split_units(items, folds, train_cfg.seed)
    per_fold: list[dict[str, dict[str, float | int]]] = []
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
    summary: dict[str, Any] = {}
    for direction in ALL_DIRECTIONS:
        runs = [m[direction] for m in per_fold if direction in m]
        if not runs:
            continue
        summary[direction] = {
            metric: {"mean": float(np.mean([r[metric] for r in runs])),
                     "std": float(np.std([r[metric] for r in runs])),
                     "folds": [float(r[metric]) for r in runs]}
            for metric in ("recall@1", "recall@5", "recall@10", "mAP")}
    return summary
