#!/usr/bin/env python
"""Measure near-duplicate grouping: precision and recall of copy pairs at several thresholds.

The set is built from the demo corpus. Every one of its 300 digit images, 300 digit recordings
(six speakers, five takes of each digit) and 230 texts is a distinct item; among them are the
hard negatives: other images of the same digit, and other takes of the same digit by the same
speaker. Copies are made of the first --images images and --sounds recordings:

- images: JPEG at quality 95, 75, 50 and 30; resized to 2x, 3x and 0.85x; cropped by one
  pixel at two sides (3.6%); brightness and contrast changed; light noise (sigma 8 of 255);
- sounds: FLAC, Ogg Vorbis, MP3 (where libsndfile writes it); volume x0.5 and x1.5; noise at
  40 and 30 dB SNR; cropped by 1.5% at each end; resampled to 44.1 kHz stereo; 0.3 s of
  silence before it;
- texts: the first --texts demo texts written to .txt files, as they are and with other case
  and spacing (the inline item and its files are copies).

Everything is indexed into one collection through the engine, then `Engine.duplicates` groups it
at each threshold. A pair counts as found when both items land in one group; precision is over
every pair inside the groups, recall over every pair of an original and its copies (and of its
copies with each other). The same is computed for the model's vectors alone (connected
components of item-vector cosine above t), which is what the fingerprints are there to beat.
Also timed: `Engine.duplicates`, and the extra cost of collapsing a search's results.

Prints one JSON object. Not a test: run it by hand.

    .venv/bin/python scripts/bench_duplicates.py [--images 40] [--sounds 40] [--texts 20]
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crossmodal.aligner.registry import load_aligner
from crossmodal.core import Engine, query_from_fields
from crossmodal.core.indexing import model_info
from crossmodal.demo.showcase import CORPUS_DIR, CORPUS_LIST
from crossmodal.ingest.fingerprint import IMAGE_GRID, encode
from crossmodal.items import NewItem
from crossmodal.settings import IndexSettings, Settings
from crossmodal.storage.collection import Collection

THRESHOLDS = (0.90, 0.93, 0.95, 0.96, 0.97, 0.98, 0.99)
VECTOR_THRESHOLDS = (0.999, 0.9995, 0.9999, 0.99999)


def image_copies(src: Path, out: Path, rng: np.random.Generator) -> dict[str, Path]:
    """The copies of one image, by kind of change."""
    im = Image.open(src).convert("L")
    w, h = im.size
    made: dict[str, Image.Image | bytes] = {}
    for quality in (95, 75, 50, 30):
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality)
        made[f"jpeg{quality}"] = buf.getvalue()
    made["resize2x"] = im.resize((2 * w, 2 * h), Image.Resampling.BICUBIC)
    made["resize3x"] = im.resize((3 * w, 3 * h), Image.Resampling.LANCZOS)
    made["resize0.85x"] = im.resize((round(0.85 * w), round(0.85 * h)), Image.Resampling.LANCZOS)
    made["crop3.6%"] = im.crop((1, 1, w, h))
    pixels = np.asarray(im, dtype=np.float32)
    made["brightness"] = Image.fromarray(np.clip(pixels * 0.8 + 30, 0, 255).astype(np.uint8))
    made["noise"] = Image.fromarray(np.clip(pixels + rng.normal(0, 8, pixels.shape), 0, 255).astype(np.uint8))
    paths = {}
    for kind, value in made.items():
        path = out / f"{src.stem}.{kind}.{'jpg' if isinstance(value, bytes) else 'png'}"
        path.write_bytes(value) if isinstance(value, bytes) else value.save(path)
        paths[kind] = path
    return paths


def sound_copies(src: Path, out: Path, rng: np.random.Generator) -> dict[str, Path]:
    """The copies of one recording, by kind of change."""
    wave, rate = sf.read(src, dtype="float32")
    n = wave.shape[0]
    rms = float(np.sqrt(np.mean(wave ** 2)))
    cut = max(1, int(0.015 * n))
    hi = soxr.resample(wave, rate, 44100)
    made = {
        "flac": (wave, rate, {}), "ogg": (wave, rate, {"format": "OGG", "subtype": "VORBIS"}),
        "mp3": (wave, rate, {"format": "MP3"}),
        "volume0.5": (wave * 0.5, rate, {}), "volume1.5": (np.clip(wave * 1.5, -1, 1), rate, {}),
        "noise40dB": (wave + rng.normal(0, rms * 0.01, n).astype(np.float32), rate, {}),
        "noise30dB": (wave + rng.normal(0, rms * 10 ** -1.5, n).astype(np.float32), rate, {}),
        "crop3%": (wave[cut:n - cut], rate, {}), "44k-stereo": (np.stack([hi, hi], axis=1), 44100, {}),
        "lead-in": (np.concatenate([np.zeros(int(0.3 * rate), np.float32), wave]), rate, {}),
    }
    if "MP3" not in sf.available_formats():  # libsndfile before 1.1 cannot write it
        del made["mp3"]
    suffix = {"flac": "flac", "ogg": "ogg", "mp3": "mp3"}
    paths = {}
    for kind, (samples, sr, options) in made.items():
        path = out / f"{src.stem}.{kind}.{suffix.get(kind, 'wav')}"
        sf.write(path, samples, sr, **options)
        paths[kind] = path
    return paths


def build(folder: Path, images: int, sounds: int, texts: int) -> tuple[dict[str, str], dict[str, str]]:
    """The copies beside the corpus item list; returns (uri -> its original's uri, uri -> kind)."""
    rng = np.random.default_rng(0)
    original_of, kind_of = {}, {}
    for sub, count, make in (("images", images, image_copies), ("audio", sounds, sound_copies)):
        (folder / sub).mkdir(parents=True)
        for src in sorted((CORPUS_DIR / sub).iterdir())[:count]:
            for kind, path in make(src, folder / sub, rng).items():
                original_of[str(path.resolve())], kind_of[str(path.resolve())] = str(src.resolve()), kind
    lines = [json.loads(line) for line in CORPUS_LIST.read_text().splitlines() if line.strip()]
    (folder / "texts").mkdir()
    inline = [(n, line) for n, line in enumerate(lines, 1) if line.get("modality") == "text"][:texts]
    for n, line in inline:
        source = f"{CORPUS_LIST.resolve()}#L{n}"
        for kind, text in (("same", line["text"] + "\n"), ("case+spacing", "  " + line["text"].upper() + "\n\n")):
            path = folder / "texts" / f"line{n}.{kind}.txt"
            path.write_text(text)
            original_of[str(path.resolve())], kind_of[str(path.resolve())] = source, kind
    return original_of, kind_of


def pairs_of(groups: list[list[str]]) -> set[frozenset[str]]:
    return {frozenset(p) for g in groups for p in itertools.combinations(sorted(g), 2)}


def score(groups: list[list[str]], truth: set[frozenset[str]], modality_of: dict[str, str],
          original_of: dict[str, str]) -> dict:
    """Pair precision and recall per modality, and how many found groups mix distinct originals."""
    found = pairs_of(groups)
    out = {}
    for modality in ("image", "audio", "text"):
        f = {p for p in found if modality_of[next(iter(p))] == modality}
        t = {p for p in truth if modality_of[next(iter(p))] == modality}
        hits = len(f & t)
        mixed = [g for g in groups if modality_of[g[0]] == modality and len({original_of.get(u, u) for u in g}) > 1]
        out[modality] = {"precision": round(hits / len(f), 4) if f else 1.0,
                         "recall": round(hits / len(t), 4) if t else 1.0, "pairs_found": len(f),
                         "false_pairs": len(f - t), "mixed_groups": len(mixed)}
    return out


def vector_groups(engine: Engine, threshold: float, uri_of: dict[int, str]) -> list[list[str]]:
    """Connected components of item-vector cosine >= threshold within a modality (the baseline)."""
    catalog = engine.collection.catalog
    vectors = catalog.item_vectors(list(uri_of))
    modality = {i: (engine.item(i) or {}).get("modality") for i in uri_of}
    groups: list[list[str]] = []
    for m in ("image", "audio", "text"):
        ids = [i for i in uri_of if modality[i] == m and i in vectors]
        x = np.stack([vectors[i] for i in ids])
        groups += [[uri_of[ids[r]] for r in g] for g in components(len(ids), np.argwhere(np.triu(x @ x.T >= threshold,
                                                                                                   1)))]
    return groups


def components(n: int, pairs: np.ndarray) -> list[list[int]]:
    """Connected components (two members or more) of the graph on n rows with these edges."""
    parent = list(range(n))

    def root(a: int) -> int:
        while parent[a] != a:
            a = parent[a]
        return a

    for a, b in pairs.tolist():
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[rb] = ra
    members = defaultdict(list)
    for row in range(n):
        members[root(row)].append(row)
    return [g for g in members.values() if len(g) > 1]


def at_scale(items: int) -> dict:
    """`Engine.duplicates` over ``items`` synthetic image items (random vectors and fingerprints,
    one in a hundred with a planted copy): the time a whole-collection listing takes."""
    rng = np.random.default_rng(1)
    aligner = load_aligner("starter")
    with tempfile.TemporaryDirectory(prefix="crossmodal-dups-scale-") as tmp:
        coll = Collection.create(Path(tmp) / "c", model_info(aligner, "starter"))
        prints = rng.normal(size=(items, IMAGE_GRID ** 2)).astype(np.float32)
        vectors = rng.normal(size=(items, aligner.embed_dim)).astype(np.float32)
        planted = np.arange(0, items, 100)[1:]
        prints[planted] = prints[planted - 1] + rng.normal(scale=0.05, size=(planted.size, prints.shape[1]))
        vectors[planted] = vectors[planted - 1]
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with coll.catalog.transaction():
            ids = coll.catalog.add_items([
                NewItem(f"h{i}", "image", ("image",), {"fingerprint": {"v": 1, "image": encode(p / np.linalg.norm(p))}},
                        vectors={"image": v}) for i, (p, v) in enumerate(zip(prints, vectors))])
            for i, item_id in enumerate(ids):
                coll.catalog.link_file(f"/synthetic/{i}.png", item_id, 1, 1)
        coll.sync_indexes(IndexSettings())
        coll.close()
        with Engine.open(Path(tmp) / "c", settings=Settings()) as engine:
            start = time.perf_counter()
            groups = engine.duplicates()
            took = time.perf_counter() - start
    return {"items": items, "seconds": round(took, 2), "groups": len(groups), "planted": int(planted.size)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=40, help="images to copy (default 40)")
    parser.add_argument("--sounds", type=int, default=40, help="recordings to copy (default 40)")
    parser.add_argument("--texts", type=int, default=20, help="texts to write to files twice (default 20)")
    parser.add_argument("--queries", type=int, default=50, help="searches timed with and without collapsing")
    parser.add_argument("--scale", type=int, default=0, metavar="N",
                        help="also time `duplicates` over N synthetic items (default: skip)")
    args = parser.parse_args()
    scale = at_scale(args.scale) if args.scale else None
    with tempfile.TemporaryDirectory(prefix="crossmodal-dups-") as tmp:
        folder = Path(tmp) / "set"
        original_of, kind_of = build(folder, args.images, args.sounds, args.texts)
        with Engine.open(Path(tmp) / "c", create=True, settings=Settings()) as engine:
            engine.index([CORPUS_LIST, folder], progress=False)
            uri_of, modality_of = {}, {}
            for item_id, facts in sorted(engine.collection.catalog.filter_fields().items()):
                uri_of[item_id], modality_of[facts["uri"]] = facts["uri"], facts["modality"]
            truth_groups = defaultdict(list)
            for uri in uri_of.values():
                truth_groups[original_of.get(uri, uri)].append(uri)
            truth = pairs_of(list(truth_groups.values()))
            per_kind = defaultdict(list)
            rows = []
            for t in THRESHOLDS:
                start = time.perf_counter()
                groups = engine.duplicates(t)
                took = time.perf_counter() - start
                found_groups = [[uri_of[x["id"]] for x in g.items] for g in groups]
                rows.append({"threshold": t, "seconds": round(took, 3),
                             **score(found_groups, truth, modality_of, original_of)})
                together = {u: i for i, g in enumerate(found_groups) for u in g}
                for uri, kind in kind_of.items():
                    if uri in modality_of:
                        per_kind[(t, modality_of[uri], kind)].append(
                            together.get(uri, -1) >= 0 and together.get(uri) == together.get(original_of[uri]))
            baseline = [{"threshold": t, **score(vector_groups(engine, t, uri_of), truth, modality_of, original_of)}
                        for t in VECTOR_THRESHOLDS]
            timings = {True: [], False: []}
            queries = [query_from_fields({"text": f"the digit {d % 10}", "k": 10}) for d in range(args.queries)]
            for query in queries:
                for collapse in (False, True):
                    start = time.perf_counter()
                    engine.search(replace(query, collapse=collapse))
                    timings[collapse].append(time.perf_counter() - start)
    recall_by_kind: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for (t, modality, kind), hits in sorted(per_kind.items()):
        recall_by_kind[modality][kind][str(t)] = round(sum(hits) / len(hits), 3)
    print(json.dumps({
        "set": {"items": len(uri_of), "copies": len(kind_of), "true_pairs": len(truth),
                "items_by_modality": {m: sum(1 for v in modality_of.values() if v == m) for m in ("image", "audio",
                                                                                                 "text")}},
        "fingerprints": rows, "vectors_only": baseline,
        "recall_by_kind": recall_by_kind,
        "search_ms_p50": {"no_collapse": round(1000 * statistics.median(timings[False]), 2),
                          "collapse": round(1000 * statistics.median(timings[True]), 2)},
        **({"at_scale": scale} if scale else {}),
    }, indent=2))


if __name__ == "__main__":
    main()
