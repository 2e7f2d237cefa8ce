"""The demo: index the bundled corpus into a collection (incrementally, so later runs are
instant), then search it with one query per modality and show the nearest items of every
other modality. It exercises the whole path offline: ingest, embed, index, search."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from crossmodal.aligner.model import Aligner
from crossmodal.engine import Engine
from crossmodal.index.build import IndexReport, index_paths
from crossmodal.query import Query, QueryPart, SearchResult
from crossmodal.settings import Settings

CORPUS_DIR = Path(__file__).with_name("corpus")
DEFAULT_TEXT_QUERY = "someone saying seven"
DEFAULT_IMAGE_QUERY = CORPUS_DIR / "images" / "mnist_t10k_00173_3.png"
DEFAULT_AUDIO_QUERY = CORPUS_DIR / "audio" / "5_jackson_0.wav"


@dataclass
class QueryResult:
    modality: str
    query: str
    hits: dict[str, list[SearchResult]]


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(CORPUS_DIR))
    except ValueError:
        return str(path)


def run_demo(folder: Path, settings: Settings, k: int = 3, text: str | None = None, image: Path | None = None,
             audio: Path | None = None, model: str | None = None, progress: bool = True,
             aligner: Aligner | None = None) -> tuple[IndexReport, list[QueryResult]]:
    """Build (or bring up to date) the demo collection at ``folder`` and query it."""
    report = index_paths(folder, [CORPUS_DIR], settings, model_ref=model, progress=progress, aligner=aligner)
    results = []
    with Engine.open(folder, settings=settings, aligner=aligner) as engine:
        text, image, audio = text or DEFAULT_TEXT_QUERY, image or DEFAULT_IMAGE_QUERY, audio or DEFAULT_AUDIO_QUERY
        queries = [("text", repr(text), QueryPart("text", text=text)),
                   ("image", _shown(image), QueryPart("image", path=Path(image))),
                   ("audio", _shown(audio), QueryPart("audio", path=Path(audio)))]
        for modality, name, part in queries:
            hits = {t: engine.search(Query((part,), targets=(t,), k=k)).results
                    for t in ("text", "image", "audio") if t != modality}
            results.append(QueryResult(modality, name, hits))
    return report, results
