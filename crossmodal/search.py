"""Cosine retrieval from any modality into any other over one collection.

All vectors live in one L2-normalised space, so a score from the image index and a score from
the audio index are the same kind of number (a cosine) and results from several targets merge
by score. Each item appears once, at its best-matching vector (for audio, the best window,
whose start and end seconds are kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from crossmodal.aligner.model import Aligner
from crossmodal.errors import ConfigError
from crossmodal.index.collection import INDEX_KINDS, Collection
from crossmodal.ingest.decode import decode_audio, decode_image

TARGETS = ("text", "image", "audio")


@dataclass(frozen=True)
class SearchResult:
    """One hit: the catalog item, where it is, its cosine score and what matched."""

    id: int
    modality: str
    uri: str
    score: float
    start: float | None
    end: float | None
    matched: str
    text: str | None
    label: str | None

    def as_dict(self) -> dict:
        return asdict(self)


def embed_query(aligner: Aligner, text: str | None = None, image: str | Path | None = None,
                audio: str | Path | None = None) -> np.ndarray:
    """One query vector from exactly one of text, an image file or an audio file."""
    given = [x for x in (text, image, audio) if x is not None]
    if len(given) != 1:
        raise ConfigError("give exactly one query: text, an image file or an audio file")
    if text is not None:
        if not text.strip():
            raise ConfigError("the text query is empty")
        return aligner.embed_texts([text])[0]
    if image is not None:
        return aligner.embed_images([decode_image(image)])[0]
    return aligner.embed_audio([decode_audio(audio)], sources=[str(audio)])[0].clip_vector


def parse_targets(targets: str | Sequence[str] | None) -> tuple[str, ...]:
    """('joint',) or a subset of text, image, audio; default every modality."""
    if targets is None:
        return TARGETS
    names = [t.strip() for t in (targets.split(",") if isinstance(targets, str) else targets) if t.strip()]
    bad = [t for t in names if t not in (*TARGETS, "joint")]
    if bad or not names:
        raise ConfigError(f"unknown target {bad[0] if bad else targets!r}; use text, image, audio or joint")
    if "joint" in names and len(names) > 1:
        raise ConfigError("target 'joint' cannot be combined with modality targets")
    return tuple(dict.fromkeys(names))


def search_vector(collection: Collection, vector: np.ndarray, targets: Sequence[str] = TARGETS,
                  k: int = 10) -> list[SearchResult]:
    """The k best items for a query vector across the target indexes."""
    if k < 1:
        raise ConfigError("k must be at least 1")
    names = [t for t in targets if t in INDEX_KINDS]
    total = sum(collection.index(n).ntotal for n in names)
    fetch = min(total, 4 * k + 16)
    while True:
        best: dict[int, tuple[float, int]] = {}
        for name in names:
            scores, ids = collection.search(name, vector, fetch)
            for score, vid in zip(scores[0], ids[0]):
                if vid >= 0:
                    best.setdefault(int(vid), (float(score), int(vid)))
        hits = collection.catalog.describe(list(best))
        per_item: dict[int, tuple[float, int]] = {}
        for vid, (score, _) in best.items():
            hit = hits.get(vid)
            if hit is not None and (hit.item_id not in per_item or score > per_item[hit.item_id][0]):
                per_item[hit.item_id] = (score, vid)
        if len(per_item) >= k or fetch >= total:
            break
        fetch = min(total, fetch * 4)
    ranked = sorted(per_item.values(), key=lambda sv: (-sv[0], sv[1]))[:k]
    out = []
    for score, vid in ranked:
        h = hits[vid]
        label = h.meta.get("label")
        out.append(SearchResult(
            id=h.item_id, modality=h.modality, uri=h.uri, score=round(score, 6),
            start=h.start if h.kind == "audio" else None, end=h.end if h.kind == "audio" else None,
            matched=h.kind, text=h.text if h.kind == "text" else h.meta.get("caption"),
            label=None if label is None else str(label)))
    return out
