#!/usr/bin/env python
"""Measure calibrated relevance on the demo collection: per direction before and after, mixing,
and in-domain against out-of-domain queries (the figures in docs/search.md, "Scores and
calibration").

In-domain queries come from outside the collection: digit phrasings no demo text uses, MNIST
t10k images the demo does not hold and FSDD recordings with take index 5-9 (the demo holds
takes 0-4), from ``--data`` (the layout of ../shared/data). Out-of-domain queries are made here:
sentences about other things, photo-like pictures (smooth colour fields with shapes) and sounds
that are not speech (noises, tones, chirps, chords, clicks).

1. Per direction (query modality -> target): the top match's raw cosine and calibrated
   relevance (median, 10th-90th percentile) and how often it has the query's digit.
2. Mixing: the modalities and the digit precision of the top 12 with every target, ranked by
   raw cosine (before) and by calibrated relevance (after).
3. The best calibrated relevance of each query (every target) for in-domain and out-of-domain
   queries, and how each threshold separates them; also each query's best match in its weakest
   target (a stricter signal, reported, not used: see docs/search.md).
4. The time the calibration takes to compute.

    .venv/bin/python scripts/measure_calibration.py --data ../shared/data [--collection indexes/demo]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))

from starter.mnist import load_mnist  # noqa: E402

from crossmodal.core import Engine, query_from_fields  # noqa: E402
from crossmodal.demo.showcase import CORPUS_DIR, CORPUS_LIST  # noqa: E402
from crossmodal.search.calibration import compute_calibration  # noqa: E402
from crossmodal.settings import Settings  # noqa: E402

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEXT_TEMPLATES = ["someone saying {w}", "a handwritten {w}", "the number {d}", "{w}", "a picture of a {d}",
                  "a recording of the word {w}"]
OUT_OF_DOMAIN_TEXTS = [
    "a dog barking in the park", "rain on a tin roof", "a red sports car on a mountain road",
    "the stock market fell sharply today", "a recipe for lemon cake", "a cat asleep on a sofa",
    "children playing football after school", "thunder and heavy rain at night", "a violin concerto",
    "the Eiffel tower at sunset", "waves crashing on a sandy beach", "an empty parking lot at night",
    "a bowl of ramen with an egg", "a mountain covered in snow", "someone typing on a keyboard",
    "traffic noise in a busy city", "a bird singing at dawn", "the history of the Roman empire",
    "how to change a bicycle tyre", "a blue sky with white clouds", "an old woman knitting a scarf",
    "the smell of fresh bread", "a jazz band playing in a bar", "a spaceship landing on the moon"]
TARGETS = ("text", "image", "audio")


def photo_like(rng: np.random.Generator, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A picture with the statistics of a photo rather than of handwriting: smooth colour fields,
    a horizon, a few filled shapes and fine noise."""
    w, h = size
    low = rng.random((6, 8, 3))
    field = np.asarray(Image.fromarray((low * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC), dtype=np.float32)
    horizon = int(h * rng.uniform(0.3, 0.7))
    field[:horizon] = 0.5 * field[:horizon] + 0.5 * np.array(rng.uniform(80, 230, 3), dtype=np.float32)
    image = Image.fromarray(np.clip(field + rng.normal(0, 6, field.shape), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 6))):
        x, y = rng.integers(0, w - 40), rng.integers(0, h - 40)
        box = (int(x), int(y), int(x + rng.integers(20, 140)), int(y + rng.integers(20, 110)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    return image


def not_speech(i: int, rng: np.random.Generator, rate: int = 16000, seconds: float = 2.0) -> np.ndarray:
    """Sounds that are not spoken digits: noises, tones, chirps, chords, clicks, modulated noise."""
    t = np.arange(int(rate * seconds)) / rate
    kind = i % 8
    if kind == 0:
        x = rng.normal(0, 0.3, t.size)
    elif kind == 1:  # pink-ish: integrated white noise, high-passed
        x = np.cumsum(rng.normal(0, 1, t.size))
        x = np.diff(x, prepend=0) * 0.3 + 0.02 * (x - x.mean()) / (x.std() + 1e-9)
    elif kind == 2:
        x = 0.4 * np.sin(2 * np.pi * rng.choice([220, 440, 1000, 3000]) * t)
    elif kind == 3:
        f0, f1 = rng.uniform(100, 500), rng.uniform(1000, 4000)
        x = 0.4 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * seconds)))
    elif kind == 4:
        x = sum(0.15 * np.sin(2 * np.pi * f * t) for f in rng.choice([261.6, 329.6, 392.0, 523.3, 659.3], 3))
    elif kind == 5:
        x = np.zeros(t.size)
        x[:: int(rate / rng.uniform(3, 12))] = 0.9
    elif kind == 6:  # rain-like: noise with a slow random envelope
        x = rng.normal(0, 0.3, t.size) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
    else:  # a short melody of harmonic notes
        x = np.zeros(t.size)
        for start in np.linspace(0, seconds, 5)[:-1]:
            f = 220 * 2 ** (rng.integers(0, 12) / 12)
            span = (t >= start) & (t < start + seconds / 4)
            x[span] = sum(0.2 / k * np.sin(2 * np.pi * k * f * t[span]) for k in range(1, 5))
    return (x / max(1e-9, np.abs(x).max()) * 0.5).astype(np.float32)


def in_domain_queries(data: Path, folder: Path, per_digit: int) -> list[dict]:
    """(fields, digit, modality) of held-out digit queries in every modality."""
    queries = [{"fields": {"text": t.format(w=WORDS[d], d=d)}, "digit": str(d), "modality": "text"}
               for d in range(10) for t in TEXT_TEMPLATES]
    held = {int(p.stem.split("_")[2]) for p in (CORPUS_DIR / "images").glob("mnist_t10k_*.png")}
    images, labels = load_mnist(data / "mnist", "t10k")
    taken = {d: 0 for d in range(10)}
    for i, (pixels, label) in enumerate(zip(images, labels)):
        if i in held or taken[int(label)] >= per_digit:
            continue
        taken[int(label)] += 1
        path = folder / f"mnist_{i}_{label}.png"
        Image.fromarray(pixels).save(path)
        queries.append({"fields": {"image": str(path)}, "digit": str(label), "modality": "image"})
    recordings = sorted((data / "fsdd" / "recordings").glob("*.wav"))
    taken = {d: 0 for d in range(10)}
    for path in recordings:
        digit, _, take = path.stem.split("_")
        if 5 <= int(take) <= 9 and taken[int(digit)] < per_digit:
            taken[int(digit)] += 1
            queries.append({"fields": {"audio": str(path)}, "digit": digit, "modality": "audio"})
    return queries


def out_of_domain_queries(folder: Path, count: int) -> list[dict]:
    rng = np.random.default_rng(7)
    queries = [{"fields": {"text": t}, "modality": "text"} for t in OUT_OF_DOMAIN_TEXTS[:count]]
    for i in range(count):
        path = folder / f"photo_{i}.png"
        photo_like(rng).save(path)
        queries.append({"fields": {"image": str(path)}, "modality": "image"})
    for i in range(count):
        path = folder / f"sound_{i}.wav"
        sf.write(path, not_speech(i, rng), 16000)
        queries.append({"fields": {"audio": str(path)}, "modality": "audio"})
    return queries


def quantiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {name: round(float(np.quantile(a, q)), 4) for name, q in
            (("min", 0.0), ("p10", 0.1), ("p25", 0.25), ("median", 0.5), ("p75", 0.75), ("p90", 0.9), ("max", 1.0))}


def tops(engine: Engine, queries: list[dict]) -> None:
    """Each query's top result in each target alone (its cosine, relevance and label), in place."""
    for q in queries:
        q["tops"] = {}
        for target in TARGETS:
            top = engine.search(query_from_fields({**q["fields"], "targets": target, "k": 1})).results[0]
            q["tops"][target] = (top.cosine, top.relevance, top.label)


def per_direction(queries: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for target in TARGETS:
        for modality in TARGETS:
            mine = [q["tops"][target] for q in queries if q["modality"] == modality]
            cos, rel = [t[0] for t in mine], [t[1] for t in mine]
            hits = [t[2] == q["digit"] for q, t in zip([q for q in queries if q["modality"] == modality], mine)]
            out[f"{modality}>{target}"] = {
                "raw cosine": {k: v for k, v in quantiles(cos).items() if k in ("p10", "median", "p90")},
                "calibrated relevance": {k: v for k, v in quantiles(rel).items() if k in ("p10", "median", "p90")},
                "top digit right": round(float(np.mean(hits)), 3), "queries": len(cos)}
    return out


def mixing(engine: Engine, queries: list[dict], k: int = 12) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for modality in TARGETS:
        mine = [q for q in queries if q["modality"] == modality]
        tally = {"before": {"text": 0, "image": 0, "audio": 0, "right": 0, "all three": 0},
                 "after": {"text": 0, "image": 0, "audio": 0, "right": 0, "all three": 0}}
        for q in mine:
            wide = engine.search(query_from_fields({**q["fields"], "k": 100})).results
            for when, results in (("before", sorted(wide, key=lambda r: -r.cosine)[:k]),
                                  ("after", engine.search(query_from_fields({**q["fields"], "k": k})).results)):
                for r in results:
                    tally[when][r.modality] += 1
                    tally[when]["right"] += r.label == q["digit"]
                tally[when]["all three"] += len({r.modality for r in results}) == 3
        n = max(1, len(mine))
        out[modality] = {when: {"share text": round(t["text"] / (n * k), 3),
                                "share image": round(t["image"] / (n * k), 3),
                                "share audio": round(t["audio"] / (n * k), 3),
                                "precision@12": round(t["right"] / (n * k), 3),
                                "queries with all three kinds": round(t["all three"] / n, 3)}
                         for when, t in tally.items()}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="MNIST and FSDD (../shared/data)")
    parser.add_argument("--collection", type=Path, default=Path("indexes/demo"))
    parser.add_argument("--per-digit", type=int, default=10, help="held-out images and clips per digit")
    parser.add_argument("--out-of-domain", type=int, default=24, help="out-of-domain queries per modality")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Engine.open(args.collection, create=True, settings=Settings()) as engine:
        if not engine.counts().get("items"):
            engine.index([CORPUS_LIST], progress=False)
        folder = Path(tmp)
        inside = in_domain_queries(args.data, folder, args.per_digit)
        outside = out_of_domain_queries(folder, args.out_of_domain)
        engine.load()
        started = time.perf_counter()
        opened = {name: engine.collection.index(name) for name in engine.collection.manifest["indexes"]}
        calibration = compute_calibration(engine.collection.catalog, opened)
        seconds = time.perf_counter() - started
        tops(engine, inside)
        tops(engine, outside)
        best: dict[str, dict] = {"in-domain": {}, "out-of-domain": {}}
        weakest: dict[str, dict] = {"in-domain": {}, "out-of-domain": {}}
        for name, queries in (("in-domain", inside), ("out-of-domain", outside)):
            for modality in TARGETS:
                mine = [[q["tops"][t][1] for t in TARGETS] for q in queries if q["modality"] == modality]
                best[name][modality] = [max(v) for v in mine]  # the best match, all targets together
                weakest[name][modality] = [min(v) for v in mine]
        separation = {}
        for threshold in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7):
            separation[str(threshold)] = {
                "in-domain flagged": round(float(np.mean([v < threshold for m in TARGETS
                                                          for v in best["in-domain"][m]])), 3),
                "out-of-domain flagged": {m: round(float(np.mean([v < threshold for v in best["out-of-domain"][m]])), 3)
                                          for m in TARGETS}}
        report = {
            "collection": str(args.collection), "counts": engine.counts(),
            "anchors": calibration["directions"], "calibration seconds": round(seconds, 3),
            "per direction": per_direction(inside), "mixing": mixing(engine, inside),
            "best relevance": {name: {m: quantiles(v) for m, v in by.items()} for name, by in best.items()},
            "best relevance of the weakest target": {name: {m: quantiles(v) for m, v in by.items()}
                                                     for name, by in weakest.items()},
            "threshold": {"setting": engine.settings.search.weak_relevance, "separation": separation}}
    json.dump(report, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
