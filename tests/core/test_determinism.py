"""End to end: a file's stored vectors do not depend on the files it was indexed beside.

The same spoken digit, picture and text are indexed twice, into two collections, once among
shorter neighbours and once among longer ones (so they share embedding batches with different
companions); every stored vector of theirs must agree (cosine >= 0.99999)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from crossmodal.core import Engine
from crossmodal.demo.showcase import CORPUS_DIR, CORPUS_LIST
from crossmodal.settings import Settings

MIN_COSINE = 0.99999
TARGETS = ("target_digit.wav", "target_digit.png", "target_note.txt")


def _texts() -> list[str]:
    rows = [json.loads(line) for line in CORPUS_LIST.read_text(encoding="utf-8").splitlines()]
    return [r["text"] for r in rows if r["modality"] == "text"]


def _write_folder(folder: Path, longer: bool) -> None:
    """The three target files, byte for byte the same in each folder, and neighbours that are
    all shorter (or all longer) than them."""
    folder.mkdir(parents=True)
    wavs = sorted((CORPUS_DIR / "audio").glob("*.wav"))
    pngs = sorted((CORPUS_DIR / "images").glob("*.png"))
    texts = _texts()
    shutil.copyfile(wavs[0], folder / TARGETS[0])
    shutil.copyfile(pngs[0], folder / TARGETS[1])
    (folder / TARGETS[2]).write_text(texts[0], encoding="utf-8")
    for i, path in enumerate(wavs[40:52]):
        samples, rate = sf.read(path, dtype="float32")
        samples = np.concatenate([samples] * 5) if longer else samples[: int(0.3 * rate)]
        sf.write(folder / f"neighbour_{i}.wav", samples, rate)
    for i, path in enumerate(pngs[40:52]):
        image = Image.open(path).convert("L")
        image.resize((112, 112) if longer else (14, 14)).save(folder / f"neighbour_{i}.png")
    for i in range(12):
        text = " ".join(texts[1 + i:5 + i]) if longer else texts[1 + i].split()[0]
        (folder / f"neighbour_note_{i}.txt").write_text(text, encoding="utf-8")


def _stored_vectors(engine: Engine) -> dict[str, dict[tuple, np.ndarray]]:
    """Each target file's stored vectors, keyed by (kind, segment start)."""
    catalog = engine.collection.catalog
    out: dict[str, dict[tuple, np.ndarray]] = {}
    for uri, state in catalog.file_states().items():
        name = Path(uri).name
        if name not in TARGETS:
            continue
        ids = catalog.vectors_of_items([state.item_id])
        hits = catalog.describe(ids)
        vectors = catalog.vectors_by_id(ids)
        out[name] = {(hits[v].kind, hits[v].start): vectors[v] for v in ids}
    return out


def test_a_files_vectors_do_not_depend_on_its_neighbours(tmp_path, starter):
    stored = []
    for longer in (False, True):
        source = tmp_path / ("longer" if longer else "shorter")
        _write_folder(source, longer)
        with Engine.open(tmp_path / f"collection_{source.name}", create=True, settings=Settings(),
                         aligner=starter) as engine:
            engine.index([source], progress=False)
            stored.append(_stored_vectors(engine))
    among_shorter, among_longer = stored
    assert set(among_shorter) == set(among_longer) == set(TARGETS)
    for name in TARGETS:
        assert among_shorter[name].keys() == among_longer[name].keys(), name
        for key, a in among_shorter[name].items():
            b = among_longer[name][key]
            cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
            assert cosine >= MIN_COSINE, (name, key, cosine)
