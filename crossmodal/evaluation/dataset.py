"""Labelled items held in memory, decoded once from an item list, for evaluation and training.

Each modality keeps model-ready inputs (strings, ink-centred glyphs or preprocessed images,
mono waveforms at the model rate) plus integer label and group ids (-1 for none). Files that
fail to decode are reported and skipped, never fatal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from crossmodal.aligner.audio_towers import to_model_rate
from crossmodal.aligner.image_towers import DigitCnnBackbone, ink_centred
from crossmodal.aligner.model import Aligner
from crossmodal.errors import DecodeError
from crossmodal.ingest.decode import decode_audio, decode_image
from crossmodal.ingest.item_list import ListItem
from crossmodal.media import MODALITIES

LOG = logging.getLogger(__name__)


@dataclass
class ModalityData:
    """All items of one modality, in item-list order."""

    modality: str
    inputs: Any
    labels: torch.Tensor
    groups: torch.Tensor
    sources: list[str]
    label_names: list[str | None]

    def __len__(self) -> int:
        return len(self.sources)


@dataclass
class Dataset:
    modalities: dict[str, ModalityData]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {m: len(d) for m, d in self.modalities.items()}


class IdTable:
    """Stable string → int ids shared by every modality, so labels compare across them."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def __call__(self, value: str | None) -> int:
        if value is None:
            return -1
        return self.ids.setdefault(value, len(self.ids))


def _decode_image_input(aligner: Aligner, item: ListItem) -> torch.Tensor | np.ndarray:
    """Glyph backbones keep uint8 ink-centred pixels (a quarter of the memory, and augmentation
    works on them before normalising); other image backbones keep their preprocessed tensor."""
    backbone = aligner.tower("image").backbone
    img = decode_image(item.path)
    if isinstance(backbone, DigitCnnBackbone):
        return (ink_centred(img, backbone.cfg.image_size) * 255).round().astype(np.uint8)
    return aligner.preprocess_image(img)


def image_batch(aligner: Aligner, data: ModalityData, idx: np.ndarray,
                augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Model-ready pixels for items ``idx``: stored glyphs scaled to [0, 1], passed through
    ``augment`` when training, then normalised as the backbone expects; other backbones'
    inputs are already model-ready. Evaluation and training share it so they see one input."""
    backbone = aligner.tower("image").backbone
    batch = data.inputs[torch.from_numpy(idx)]
    if not isinstance(backbone, DigitCnnBackbone):
        return batch
    glyphs = batch.float().div(255.0).unsqueeze(1)
    if augment is not None:
        glyphs = augment(glyphs)
    return (glyphs - backbone.MEAN) / backbone.STD


def load_dataset(items: Sequence[ListItem], aligner: Aligner, labels: IdTable | None = None,
                 groups: IdTable | None = None, progress: bool = True) -> Dataset:
    """Decode every item the aligner has a tower for; skip and report undecodable ones."""
    labels = labels or IdTable()
    groups = groups or IdTable()
    per: dict[str, dict[str, list]] = {
        m: {"inputs": [], "labels": [], "groups": [], "sources": [], "names": []}
        for m in MODALITIES if m in aligner.modalities}
    skipped: list[tuple[str, str]] = []
    audio_rate = aligner.tower("audio").backbone.cfg.sample_rate if "audio" in per else 0
    for item in tqdm(items, desc="decoding", unit="item", disable=not progress, leave=False):
        if item.modality not in per:
            skipped.append((item.source, f"aligner has no {item.modality} tower"))
            continue
        try:
            if item.modality == "text":
                value: Any = item.text
            elif item.modality == "image":
                value = _decode_image_input(aligner, item)
            else:
                value = to_model_rate(decode_audio(item.path), audio_rate, str(item.path))
        except DecodeError as exc:
            LOG.warning("skipping %s", exc)
            skipped.append((item.source, exc.reason))
            continue
        except ValueError as exc:
            LOG.warning("skipping %s: %s", item.source, exc)
            skipped.append((item.source, str(exc)))
            continue
        bucket = per[item.modality]
        bucket["inputs"].append(value)
        bucket["labels"].append(labels(item.label))
        bucket["groups"].append(groups(item.group))
        bucket["sources"].append(item.source)
        bucket["names"].append(item.label)
    modalities = {}
    for modality, bucket in per.items():
        if not bucket["sources"]:
            continue
        inputs = bucket["inputs"]
        if modality == "image":
            inputs = torch.from_numpy(np.stack(inputs)) if isinstance(inputs[0], np.ndarray) else torch.stack(inputs)
        modalities[modality] = ModalityData(
            modality, inputs, torch.tensor(bucket["labels"]), torch.tensor(bucket["groups"]),
            bucket["sources"], bucket["names"])
    return Dataset(modalities, skipped)
