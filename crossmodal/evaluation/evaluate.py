"""Scoring an aligner on labelled items, and the group-aware splits that keep test items unseen.

Every item queries the gallery of every modality and counts as relevant when it shares the
query's label. Vectors are computed exactly as inference computes them, so the scores are
what search will deliver. Nothing here trains: training imports this, never the reverse.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from crossmodal.aligner.model import Aligner
from crossmodal.aligner.registry import load_aligner
from crossmodal.evaluation.dataset import Dataset, ModalityData, image_batch, load_dataset
from crossmodal.evaluation.metrics import ALL_DIRECTIONS, all_directions
from crossmodal.ingest.item_list import ListItem, read_item_list
from crossmodal.media import Waveform

LOG = logging.getLogger(__name__)

Metrics = dict[str, dict[str, float | int]]


@dataclass
class EvalReport:
    metrics: Metrics
    counts: dict[str, int]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    model_id: str = ""


def resolve_device(name: str) -> torch.device:
    """``auto`` is the GPU when there is one; anything else is a torch device name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.inference_mode()
def embed_dataset(aligner: Aligner, data: ModalityData, batch_size: int = 256) -> np.ndarray:
    """Normalised vectors for every item, exactly as inference computes them."""
    aligner.eval()
    if data.modality == "audio":
        rate = aligner.tower("audio").backbone.cfg.sample_rate
        return aligner.embed_audio_clips([Waveform(x, rate) for x in data.inputs], batch_size)
    if data.modality == "text":
        return aligner.embed_texts(list(data.inputs), batch_size)
    out = []
    for start in range(0, len(data), batch_size):
        pixels = image_batch(aligner, data, np.arange(start, min(len(data), start + batch_size)))
        out.append(aligner.encode_image(pixels.to(aligner.device)).float().cpu().numpy())
    return np.concatenate(out)


def evaluate_dataset(aligner: Aligner, data: Dataset, directions: list[str] | None = None) -> Metrics:
    """recall@k and mAP per direction over the in-memory items."""
    embeddings = {m: embed_dataset(aligner, d) for m, d in data.modalities.items()}
    labels = {m: d.labels.numpy() for m, d in data.modalities.items()}
    return all_directions(embeddings, labels, directions)


def evaluate_items(items: Sequence[ListItem], aligner: Aligner, directions: list[str] | None = None,
                   progress: bool = True) -> EvalReport:
    """Every item queries the gallery of every modality; relevant means same label."""
    unlabelled = sum(1 for it in items if it.label is None)
    if unlabelled:
        LOG.warning("%d item(s) have no label and can only count as non-relevant", unlabelled)
    data = load_dataset(items, aligner, progress=progress)
    return EvalReport(evaluate_dataset(aligner, data, directions or ALL_DIRECTIONS), data.counts(), data.skipped,
                      aligner.model_id)


def evaluate_list(path: str | Path, aligner: Aligner, directions: list[str] | None = None,
                  progress: bool = True) -> EvalReport:
    """`evaluate_items` on the items of a JSONL item list."""
    return evaluate_items(read_item_list(path), aligner, directions, progress)


def evaluate_model_on_list(path: str | Path, model: str | Path = "starter", device: str = "auto",
                           directions: list[str] | None = None, progress: bool = True) -> EvalReport:
    """Load a trained aligner (shipped name or checkpoint folder) and score it on an item list."""
    aligner = load_aligner(model, resolve_device(device))
    LOG.info("evaluating %s on %s", aligner.model_id, path)
    return evaluate_list(path, aligner, directions, progress)


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
