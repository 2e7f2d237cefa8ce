"""The demo: embed the bundled corpus and show, for one query per modality, its nearest items
of every other modality. It proves the whole aligner works offline on a fresh install."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossmodal.aligner.model import Aligner
from crossmodal.ingest.decode import decode_audio, decode_image
from crossmodal.manifest import MODALITIES, ManifestItem, read_manifest
from crossmodal.training.data import load_dataset
from crossmodal.training.trainer import embed_dataset

CORPUS_DIR = Path(__file__).with_name("corpus")
DEFAULT_TEXT_QUERY = "someone saying seven"


@dataclass
class Hit:
    modality: str
    source: str
    label: str | None
    score: float


@dataclass
class QueryResult:
    modality: str
    query: str
    hits: dict[str, list[Hit]]


def _relative(source: str, root: Path) -> str:
    try:
        return str(Path(source).relative_to(root))
    except ValueError:
        return source


def _first_with_label(items: list[ManifestItem], modality: str, label: str) -> ManifestItem:
    return next(it for it in items if it.modality == modality and it.label == label)


def run_demo(aligner: Aligner, corpus_dir: Path = CORPUS_DIR, k: int = 3, text: str | None = None,
             image: Path | None = None, audio: Path | None = None, progress: bool = True) -> list[QueryResult]:
    """Nearest neighbours, across modalities, of a text, an image and an audio query."""
    items = read_manifest(corpus_dir / "manifest.jsonl")
    data = load_dataset(items, aligner, progress=progress)
    gallery = {m: embed_dataset(aligner, d) for m, d in data.modalities.items()}
    queries: list[tuple[str, str, np.ndarray]] = []
    if "text" in aligner.modalities:
        query_text = text or DEFAULT_TEXT_QUERY
        queries.append(("text", repr(query_text), aligner.embed_texts([query_text])[0]))
    if "image" in aligner.modalities:
        path = image or _first_with_label(items, "image", "3").path
        queries.append(("image", _relative(str(path), corpus_dir), aligner.embed_images([decode_image(path)])[0]))
    if "audio" in aligner.modalities:
        path = audio or _first_with_label(items, "audio", "5").path
        vec = aligner.embed_audio([decode_audio(path)], sources=[str(path)])[0].clip_vector
        queries.append(("audio", _relative(str(path), corpus_dir), vec))
    results = []
    for modality, name, vector in queries:
        hits: dict[str, list[Hit]] = {}
        for target in MODALITIES:
            if target == modality or target not in gallery:
                continue
            scores = gallery[target] @ vector
            top = np.argsort(-scores, kind="stable")[:k]
            td = data.modalities[target]
            hits[target] = [Hit(target, _relative(td.sources[i], corpus_dir), td.label_names[i], float(scores[i]))
                            for i in top]
        results.append(QueryResult(modality, name, hits))
    return results
