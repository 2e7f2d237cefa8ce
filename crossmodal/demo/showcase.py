"""The demo: index the bundled corpus into a collection (incrementally, so later runs are
instant), then search it with one query per modality and show the nearest items of every
other modality. It exercises the whole path offline: ingest, embed, index, search.

Only the corpus's item list is indexed: it names every image, recording and caption once,
with its label (the corpus folder also holds the captions as loose files and its licence
notes, which are not content to search)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from crossmodal.core import Engine, IndexReport, Query, QueryPart, SearchResult

CORPUS_DIR = Path(__file__).with_name("corpus")
CORPUS_LIST = CORPUS_DIR / "items.jsonl"
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


def run_demo(engine: Engine, k: int = 3, text: str | None = None, image: Path | None = None,
             audio: Path | None = None, progress: bool = True) -> tuple[IndexReport, list[QueryResult]]:
    """Bring the demo collection of ``engine`` up to date with the corpus and query it."""
    report = engine.index([CORPUS_LIST], progress=progress)
    text, image, audio = text or DEFAULT_TEXT_QUERY, image or DEFAULT_IMAGE_QUERY, audio or DEFAULT_AUDIO_QUERY
    queries = [("text", repr(text), QueryPart("text", text=text)),
               ("image", _shown(Path(image)), QueryPart("image", path=Path(image))),
               ("audio", _shown(Path(audio)), QueryPart("audio", path=Path(audio)))]
    have = engine.modalities  # a model without an audio tower gets no audio query or target
    results = []
    for modality, name, part in queries:
        if modality not in have:
            continue
        hits = {t: engine.search(Query((part,), targets=(t,), k=k)).results
                for t in ("text", "image", "audio") if t != modality and t in have}
        results.append(QueryResult(modality, name, hits))
    return report, results
