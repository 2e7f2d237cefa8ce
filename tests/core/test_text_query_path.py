"""Text queries without torch: in a fresh process (this one has torch loaded, so it always takes
the torch path), a text search imports none of torch, open_clip, torchaudio, librosa or
transformers, and gives the results the torch model gives; any other query loads the model and
still answers; the collection's model is checked as strictly (other weights are refused, still
without torch); a server's `load(wait=False)` answers text queries while the model loads."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from support.media import corpus_files

from crossmodal.aligner import load_aligner, save_aligner
from crossmodal.core import Engine, Query, QueryPart, query_from_fields
from crossmodal.errors import CollectionError
from crossmodal.settings import Settings

HEAVY = ("torch", "open_clip", "torchaudio", "librosa", "transformers", "torchvision")
TEXTS = ["seven", "a handwritten four", "someone saying nine", "?!", "Ünïcödé 🎉 digits 0123456789", "eight " * 30]
PRELUDE = f"""
import json, sys, time
from crossmodal.core import Engine, query_from_fields
from crossmodal.settings import Settings
HEAVY = {HEAVY!r}
def heavy():
    return [m for m in HEAVY if m in sys.modules]
def hits(response):
    return [[h.id, h.score] for h in response.results]
"""


def run_python(code: str, *args: str, timeout: int = 300) -> dict:
    """The JSON a fresh Python process prints on its last line of stdout."""
    done = subprocess.run([sys.executable, "-c", PRELUDE + code, *args], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def torch_hits(folder: Path, starter, texts=TEXTS, k: int = 8) -> dict[str, list]:
    """What the torch text tower's own vectors find (given as vectors, so that nothing the planner
    may put between a query text and the model, such as a quantised query tower, changes them)."""
    vectors = starter.embed_texts(list(texts))
    with Engine.open(folder, settings=Settings(), aligner=starter) as engine:
        return {t: [[h.id, h.score] for h in engine.search(Query((QueryPart("text", vector=v),), k=k)).results]
                for t, v in zip(texts, vectors)}


def same_hits(mine: list, theirs: list) -> None:
    assert [i for i, _ in mine] == [i for i, _ in theirs]
    np.testing.assert_allclose([s for _, s in mine], [s for _, s in theirs], atol=2e-5)


def test_a_text_search_needs_no_torch_and_finds_what_torch_finds(demo_collection, starter):
    out = run_python("""
with Engine.open(sys.argv[1], settings=Settings()) as engine:
    found = {t: hits(engine.search(query_from_fields({"text": t, "k": 8}))) for t in json.loads(sys.argv[2])}
    print(json.dumps({"found": found, "heavy": heavy(), "loaded": engine.model_loaded,
                      "description": engine.model_description, "modalities": list(engine.modalities)}))
""", str(demo_collection), json.dumps(TEXTS))
    assert out["heavy"] == [] and not out["loaded"]
    assert out["description"] == starter.cfg.description and out["modalities"] == list(starter.modalities)
    expected = torch_hits(demo_collection, starter)
    for text in TEXTS:
        same_hits(out["found"][text], expected[text])


def test_the_command_line_search_imports_no_torch(demo_collection, starter):
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "crossmodal", "search", "--collection",
                           str(demo_collection), "--text", "seven", "-k", "5", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    imported = {m.split(".")[0] for m in re.findall(r"^import time:.*\|\s+([\w.]+)\s*$", done.stderr, re.M)}
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
    results = json.loads(done.stdout)["results"]
    same_hits([[r["id"], r["score"]] for r in results], torch_hits(demo_collection, starter, ["seven"], k=5)["seven"])


def test_other_queries_load_the_model_and_it_takes_over(demo_collection, starter):
    image = corpus_files("image", "4", 1)[0]
    out = run_python("""
with Engine.open(sys.argv[1], settings=Settings()) as engine:
    text = hits(engine.search(query_from_fields({"text": "four", "k": 8})))
    before = heavy()
    image = hits(engine.search(query_from_fields({"image": sys.argv[2], "k": 8})))
    again = hits(engine.search(query_from_fields({"text": "four", "k": 8})))
    print(json.dumps({"text": text, "image": image, "again": again, "before": before, "after": heavy(),
                      "loaded": engine.model_loaded}))
""", str(demo_collection), str(image))
    assert out["before"] == [] and "torch" in out["after"] and out["loaded"]
    with Engine.open(demo_collection, settings=Settings(), aligner=starter) as engine:
        expected = engine.search(query_from_fields({"image": str(image), "k": 8})).results
    assert [i for i, _ in out["image"]] == [r.id for r in expected]
    same_hits(out["text"], torch_hits(demo_collection, starter, ["four"])["four"])
    assert out["again"][0][0] == out["text"][0][0]  # the model answers text now, as its query settings say


@pytest.fixture()
def own_model(tmp_path, starter):
    """A collection built with a copy of the starter model in a folder of its own."""
    model = tmp_path / "model"
    shutil.copytree(starter.checkpoint_dir, model)
    media = tmp_path / "media"
    media.mkdir()
    for path in corpus_files("image", "3", 2):
        shutil.copy(path, media / path.name)
    (media / "note.txt").write_text("The digit three, written by hand.\n")
    with Engine.open(tmp_path / "coll", create=True, settings=Settings(), model=str(model)) as engine:
        engine.index([media], progress=False)
    return tmp_path / "coll", model


SEARCH_OR_ERROR = """
try:
    with Engine.open(sys.argv[1], settings=Settings(), model=sys.argv[2] or None) as engine:
        result = hits(engine.search(query_from_fields({"text": "three", "k": 3})))
except Exception as exc:
    result = f"{type(exc).__name__}: {exc}"
print(json.dumps({"result": result, "heavy": heavy()}))
"""


def test_the_collections_model_is_checked_without_torch(own_model, starter):
    folder, model = own_model
    out = run_python(SEARCH_OR_ERROR, str(folder), "")
    assert isinstance(out["result"], list) and out["result"] and out["heavy"] == []
    named = run_python(SEARCH_OR_ERROR, str(folder), str(model))  # naming its model is checked without torch too
    assert isinstance(named["result"], list) and named["heavy"] == []
    # Other weights behind the collection's reference: refused, as the torch model refuses them.
    changed = load_aligner(model)
    with torch.no_grad():
        changed.towers["text"].head[0].bias.add_(0.5)
    save_aligner(changed, model)
    out = run_python(SEARCH_OR_ERROR, str(folder), "")
    assert out["heavy"] == [] and out["result"].startswith("ModelChangedError"), out  # a CollectionError
    assert "the weights changed since it was indexed" in out["result"]
    with pytest.raises(CollectionError, match="the weights changed since it was indexed"):
        with Engine.open(folder, settings=Settings()) as engine:
            engine.search(query_from_fields({"text": "three"}))
    # A weights file that does not match its own config: the torch model's load says so.
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    out = run_python(SEARCH_OR_ERROR, str(folder), "")
    assert out["result"].startswith("CheckpointError") and "does not match its config" in out["result"]


def test_a_server_answers_text_while_the_model_loads(demo_collection, starter):
    image = corpus_files("image", "2", 1)[0]
    out = run_python("""
engine = Engine.open(sys.argv[1], settings=Settings()).load(wait=False)
text = hits(engine.search(query_from_fields({"text": "two", "k": 8})))
health = engine.health()
for _ in range(3000):
    if engine.model_loaded:
        break
    time.sleep(0.1)
image = hits(engine.search(query_from_fields({"image": sys.argv[2], "k": 8})))
again = hits(engine.search(query_from_fields({"text": "two", "k": 8})))
engine.close()
print(json.dumps({"text": text, "image": image, "again": again, "health": health["status"]}))
""", str(demo_collection), str(image), timeout=600)
    assert out["health"] == "ok" and out["image"]
    same_hits(out["text"], torch_hits(demo_collection, starter, ["two"])["two"])
    assert out["again"][0][0] == out["text"][0][0]


def test_load_without_waiting_loads_the_model_when_torch_is_there(demo_collection, starter):
    with Engine.open(demo_collection, settings=Settings()) as engine:  # torch is loaded in this process
        assert engine.load(wait=False).model_loaded
