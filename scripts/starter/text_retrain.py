"""Retrain only the starter's text tower, against its image and audio towers kept as they are.

Teaching the starter new languages changes what it reads, not what it sees or hears. The image
and audio towers of a trained checkpoint already place every digit; a text tower that maps
captions onto the same places is all a new language needs. So this recipe freezes those towers,
embeds the training images and recordings once with them, and trains the text tower (backbone
and head, optionally with a longer context) on the training captions of every language against
those fixed vectors: a multi-positive InfoNCE from each caption to the images and to the audio,
and back. Every image and audio vector, hence every image<->audio figure, is the base model's to
the bit; a step costs a forward and backward of the small text tower only, so a run takes
minutes where the full recipe takes hours on a loaded 2-core machine.
"""

from __future__ import annotations

import logging
import random
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crossmodal.aligner.checkpoint import save_aligner
from crossmodal.aligner.config import AlignerCfg
from crossmodal.aligner.registry import create_aligner, load_aligner
from crossmodal.evaluation.dataset import IdTable, load_dataset
from crossmodal.evaluation.evaluate import embed_dataset, evaluate_list
from crossmodal.evaluation.metrics import ALL_DIRECTIONS
from crossmodal.ingest.item_list import read_item_list
from crossmodal.training.augment_text import augment_text
from crossmodal.training.trainer import seed_everything

from .by_language import evaluate_list_by_language
from .digits_world import select_class_balanced, write_digits_lists

LOG = logging.getLogger(__name__)
POSITIONAL = "towers.text.backbone.transformer.positional_embedding"


def widen_context(base: Any, context_length: int, description: str | None) -> Any:
    """A copy of ``base`` whose text tower takes ``context_length`` tokens: every weight is the
    base's, the positional embeddings of the new positions start as open_clip initialises them."""
    data = base.cfg.to_dict()
    data["towers"]["text"]["backbone"]["text_cfg"]["context_length"] = context_length
    if description:
        data["description"] = description
    model = create_aligner(AlignerCfg.from_dict(data))
    state = base.state_dict()
    fresh = model.state_dict()[POSITIONAL].clone()
    keep = min(len(fresh), len(state[POSITIONAL]))
    fresh[:keep] = state[POSITIONAL][:keep]
    state[POSITIONAL] = fresh
    model.load_state_dict(state, strict=True)
    return model


NUMERAL_CHARS = set("零〇一二三四五六七八九十百千万萬亿億两兩壹贰貳叁參肆伍陆陸柒捌玖拾")
CJK = re.compile(r"[\u3400-\u9fff]")


def digit_words() -> set[str]:
    """Every spelling of a digit the captions use, lower case, with and without accents."""
    from .digits_world import DIGIT_WORDS
    from .multilingual import DE_WORDS, ES_WORDS, FR_WORDS, spell_umlauts, strip_accents

    words = {*DIGIT_WORDS, *ES_WORDS, *FR_WORDS, *DE_WORDS}
    return words | {strip_accents(w) for w in words} | {spell_umlauts(w) for w in words}


def add_filler(text: str, rng: random.Random, banned: set[str]) -> str:
    """``text`` with words the model has never seen before and/or after it: random letters between
    spaces, or for Chinese random CJK characters right against it (no spaces, so that the digit's
    bytes meet new neighbours, as in a phrasing training never had). Never a numeral or digit word.

    A held-out phrasing puts unseen words around the digit; without this the tower read them as
    evidence (French "compte à voix haute : deux" went to 7), with it it learns to look past them."""
    def chunk() -> str:
        if CJK.search(text):
            chars = []
            while len(chars) < rng.randint(1, 4):
                c = chr(rng.randint(0x4E00, 0x9FA5))
                if c not in NUMERAL_CHARS:
                    chars.append(c)
            return "".join(chars)
        words = []
        while len(words) < rng.randint(1, 3):
            word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyzéèàüöäç") for _ in range(rng.randint(2, 9)))
            if word not in banned:
                words.append(word)
        return " ".join(words)

    joint = "" if CJK.search(text) else " "
    where = rng.random()
    if where < 0.4:
        return chunk() + joint + text
    if where < 0.8:
        return text + joint + chunk()
    return chunk() + joint + text + joint + chunk()


def _multi_positive(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -log(sum of softmax over the row's positives)."""
    kept = torch.logsumexp(logits.masked_fill(~positive, float("-inf")), dim=1)
    return -(kept - torch.logsumexp(logits, dim=1)).mean()


def retrain_text_tower(data_dir: Path, base_ref: str, out_dir: Path, work_dir: Path, context_length: int = 64,
                       steps: int = 1200, text_batch: int = 256, gallery_batch: int = 512, lr: float = 1e-3,
                       images_per_digit: int = 500, typeset_per_digit: int = 300, seed: int = 0,
                       filler: float = 0.5, description: str | None = None,
                       progress: bool = False) -> dict[str, Any]:
    """Train the text tower of ``base_ref`` on every language's training captions (module
    docstring), save the result in ``out_dir`` and score it: the official split in every direction,
    unseen fonts, and each language's held-out captions."""
    started = time.time()
    seed_everything(seed)
    lists = write_digits_lists(data_dir, work_dir, typeset_per_digit=typeset_per_digit, seed=seed)
    base = load_aligner(base_ref)
    model = widen_context(base, context_length, description)
    model.eval()
    items = read_item_list(lists["train"])
    texts = [it for it in items if it.modality == "text"]
    images = [it for it in items if it.modality == "image"]
    digits = [int(it.label) for it in images]
    chosen = select_class_balanced(digits, min(images_per_digit, *np.unique(digits, return_counts=True)[1]), seed)
    labels = IdTable()
    for digit in range(10):
        labels(str(digit))
    gallery_items = [images[i] for i in chosen] + [it for it in items if it.modality == "audio"]
    data = load_dataset(gallery_items, model, labels, progress=progress)
    galleries = {m: (torch.from_numpy(embed_dataset(model, d)), d.labels) for m, d in data.modalities.items()}
    LOG.info("gallery vectors: %s", {m: len(v) for m, (v, _) in galleries.items()})
    caption_text = [it.text or "" for it in texts]
    caption_label = torch.tensor([labels(it.label) for it in texts])
    tower = model.tower("text")
    params = [p for p in tower.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.1)
    scale = float(base.logit_scale.detach().exp().clamp(max=100.0))
    rng = random.Random(seed)
    banned = digit_words()
    generator = torch.Generator().manual_seed(seed)
    history = []
    tower.train()
    for step in range(steps):
        pick = torch.randint(len(texts), (text_batch,), generator=generator)
        batch = [caption_text[i] for i in pick.tolist()]
        batch = [add_filler(t, rng, banned) if rng.random() < filler else t for t in batch]
        tokens = model.tokenize([augment_text(t, rng) for t in batch])
        vectors = tower(tokens)
        text_labels = caption_label[pick]
        loss = torch.zeros(())
        for gallery, gallery_labels in galleries.values():
            sample = torch.randint(len(gallery), (min(gallery_batch, len(gallery)),), generator=generator)
            logits = scale * vectors @ gallery[sample].T
            positive = text_labels[:, None] == gallery_labels[sample][None, :]
            loss = loss + _multi_positive(logits, positive) + _multi_positive(logits.T, positive.T)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            history.append({"step": step, "loss": float(loss.detach())})
            LOG.info("step %d/%d loss %.4f", step, steps, history[-1]["loss"])
    model.eval()
    train_minutes = (time.time() - started) / 60
    trained_on = {
        "data": "the text tower only, on training captions (en, zh-Hans, zh-Hant, es, fr, de), against the image "
                f"and audio vectors of {base.model_id} (MNIST train, FSDD recordings 5-49, typeset digits), whose "
                "image and audio towers are kept unchanged",
        "base": base.model_id,
        "text_retrain": {"steps": steps, "text_batch": text_batch, "gallery_batch": gallery_batch, "lr": lr,
                         "images_per_digit": images_per_digit, "seed": seed, "filler": filler,
                         "context_length": context_length, "logit_scale": scale, "captions": len(texts)},
        "base_trained_on": base.checkpoint_config.get("trained_on") if base.checkpoint_config else None,
    }
    save_aligner(model, out_dir, trained_on=trained_on, metrics={"history": history})
    best = load_aligner(out_dir)
    scores: dict[str, Any] = {"heldout": evaluate_list(lists["eval"], best, ALL_DIRECTIONS, progress).metrics}
    scores["heldout_by_language"] = evaluate_list_by_language(lists["eval_multilingual"], best, progress)
    if "typeset_eval" in lists:
        scores["typeset_unseen_fonts"] = evaluate_list(
            lists["typeset_eval"], best, ["image->text", "text->image"], progress).metrics
    save_aligner(best, out_dir, trained_on=trained_on, metrics=scores)
    return {"checkpoint": str(out_dir), "model_id": load_aligner(out_dir).model_id,
            "train_minutes": round(train_minutes, 1), "total_minutes": round((time.time() - started) / 60, 1),
            "final_loss": history[-1]["loss"], "metrics": scores}

