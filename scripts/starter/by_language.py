"""Text-query scores language by language on one item list.

The official split's images and audio are embedded once; the text items, each tagged with its
language in ``meta.lang``, are then scored as queries against them one language at a time, so
the per-language table costs one pass over the 10,000 images, not one per language.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal.aligner.model import Aligner
from crossmodal.errors import ConfigError
from crossmodal.evaluation.dataset import IdTable, load_dataset
from crossmodal.evaluation.evaluate import embed_dataset
from crossmodal.evaluation.metrics import ranking_metrics
from crossmodal.ingest.item_list import ListItem, read_item_list

GALLERIES = ("image", "audio")


def evaluate_by_language(items: Sequence[ListItem], aligner: Aligner,
                         progress: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
    """``{lang: {"text->image": metrics, "text->audio": metrics}}`` for every language tag the
    text items carry (an untagged text is refused: it would count for no language)."""
    texts = [item for item in items if item.modality == "text"]
    untagged = [item.source for item in texts if not item.meta.get("lang")]
    if untagged:
        raise ConfigError(f"{len(untagged)} text item(s) have no meta.lang, e.g. {untagged[0]!r}")
    labels = IdTable()
    data = load_dataset([item for item in items if item.modality in GALLERIES], aligner, labels, progress=progress)
    galleries = {m: (embed_dataset(aligner, d), d.labels.numpy()) for m, d in data.modalities.items()}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for lang in dict.fromkeys(item.meta["lang"] for item in texts):
        chosen = [item for item in texts if item.meta["lang"] == lang]
        queries = aligner.embed_texts([item.text or "" for item in chosen], 256)
        query_labels = np.array([labels(item.label) for item in chosen])
        out[lang] = {f"text->{m}": ranking_metrics(queries, query_labels, vectors, gallery_labels)
                     for m, (vectors, gallery_labels) in galleries.items()}
    return out


def evaluate_list_by_language(path: str | Path, aligner: Aligner,
                              progress: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
    """`evaluate_by_language` on the items of a JSONL item list."""
    return evaluate_by_language(read_item_list(path), aligner, progress)
