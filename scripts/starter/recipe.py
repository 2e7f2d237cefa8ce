"""The starter model's recipe: digits-world item lists in, a trained and evaluated aligner out.

One function so that `scripts/train_starter_model.py` (the shipped model) and the
leave-one-speaker-out validation run exactly the same code with different settings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crossmodal.aligner.checkpoint import read_checkpoint_config, save_aligner
from crossmodal.aligner.registry import create_aligner, load_aligner
from crossmodal.evaluation.dataset import IdTable, load_dataset
from crossmodal.evaluation.evaluate import evaluate_list, holdout_split
from crossmodal.evaluation.metrics import ALL_DIRECTIONS
from crossmodal.ingest.item_list import read_item_list
from crossmodal.training.trainer import TrainCfg, seed_everything, train

from .by_language import evaluate_list_by_language
from .digits_world import write_digits_lists
from .tts_voices import write_tts_list

LOG = logging.getLogger(__name__)


def train_digits_aligner(data_dir: Path, out_dir: Path, work_dir: Path, train_cfg: TrainCfg,
                         config: str = "starter-digits", holdout_speakers: Sequence[str] = (),
                         typeset_per_digit: int = 300, val_fraction: float = 0.05,
                         mnist_train_limit: int | None = None, tts_voices: int = 0,
                         progress: bool = True) -> dict[str, Any]:
    """Train on MNIST train + FSDD takes 5–49 (minus held-out speakers) + training captions
    (+ ``tts_voices`` synthetic speakers saying each digit), keep the best epoch by validation,
    then score it on the official held-out split, on unseen fonts, and on each held-out
    speaker, and each language's held-out captions as text queries. The scores are written into
    the checkpoint config."""
    started = time.time()
    lists = write_digits_lists(data_dir, work_dir, holdout_speakers, mnist_train_limit=mnist_train_limit,
                                       typeset_per_digit=typeset_per_digit, seed=train_cfg.seed)
    items = read_item_list(lists["train"])
    if tts_voices > 0:
        tts_list, _ = write_tts_list(Path(work_dir) / "tts-train", "train", tts_voices, train_cfg.seed)
        items += read_item_list(tts_list)
    fit_items, val_items = holdout_split(items, val_fraction, train_cfg.seed)
    seed_everything(train_cfg.seed)
    aligner = create_aligner(config)
    labels = IdTable()
    fit = load_dataset(fit_items, aligner, labels, progress=progress)
    val = load_dataset(val_items, aligner, labels, progress=progress)
    trained_on = {
        "data": "MNIST train (60k) + FSDD recordings 5-49 + training captions (en, zh-Hans, zh-Hant, es, "
                "fr, de) + typeset digits"
                + (f" + {tts_voices} synthetic voices x 10 digits" if tts_voices > 0 else ""),
        "holdout_speakers": list(holdout_speakers),
        "typeset_per_digit": typeset_per_digit,
        "tts_voices": tts_voices,
        "validation": f"{val_fraction:.0%} of the training items",
    }
    result = train(aligner, fit, val, train_cfg, out_dir, trained_on)
    train_minutes = (time.time() - started) / 60
    best = load_aligner(out_dir)
    scores: dict[str, Any] = {"validation": result.best_metrics, "best_epoch": result.best_epoch}
    scores["heldout"] = evaluate_list(lists["eval"], best, ALL_DIRECTIONS, progress).metrics
    scores["heldout_by_language"] = evaluate_list_by_language(lists["eval_multilingual"], best, progress)
    if "typeset_eval" in lists:
        scores["typeset_unseen_fonts"] = evaluate_list(
            lists["typeset_eval"], best, ["image->text", "text->image"], progress).metrics
    for speaker in holdout_speakers:
        scores[f"unseen_speaker_{speaker}"] = evaluate_list(
            lists[f"holdout_{speaker}"], best, ["audio->image", "audio->text"], progress).metrics
    saved = read_checkpoint_config(out_dir)
    save_aligner(best, out_dir, trained_on=saved["trained_on"], metrics=scores)
    return {"checkpoint": str(out_dir), "model_id": load_aligner(out_dir).model_id,
            "train_minutes": round(train_minutes, 1), "total_minutes": round((time.time() - started) / 60, 1),
            "metrics": scores}
