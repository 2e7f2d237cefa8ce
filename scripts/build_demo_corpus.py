"""Build the small demo corpus that ships inside the repo (crossmodal/demo/corpus).

Users of crossmodal do not have the training data, so the demo and the tests need a tiny,
attributed, class-balanced slice of it: 300 MNIST test images, the 300 FSDD test clips, and a
few short texts about each digit written for this project.

Example: python scripts/build_demo_corpus.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections import Counter
from pathlib import Path

# Scripts run from a checkout, not an installed package: make `crossmodal` importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# Run from a checkout: the research package `starter` lives beside this script.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from starter.digits_world import (
    FSDD_TEST_INDEXES,
    captions,
    fsdd_recordings,
    save_png_atomic,
    select_class_balanced,
)
from starter.mnist import load_mnist

from crossmodal.errors import CrossmodalError
from crossmodal.ingest.item_list import write_item_list

LOG = logging.getLogger("build_demo_corpus")
IMAGES_PER_DIGIT = 30
SELECTION_SEED = 0
SIZE_LIMIT_BYTES = 15 * 1024 * 1024

# Short plain-English texts about each digit, written for crossmodal; four per digit.
SNIPPETS: dict[int, tuple[str, ...]] = {
    0: ("Zero is the number of nothing at all: an empty box holds zero apples.",
        "The digit 0 looks like a ring or an egg standing on its end.",
        "A countdown to a rocket launch ends with three, two, one, zero.",
        "Zero is even, and adding zero to a number leaves it unchanged."),
    1: ("One is the first counting number; the Earth has one moon.",
        "The digit 1 is written as a single upright stroke.",
        "A unicycle has exactly one wheel.",
        "Multiplying any number by one leaves it the same."),
    2: ("Two is the number of eyes on a human face.",
        "A pair of shoes is two shoes, one for each foot.",
        "The digit 2 curves over the top and sits on a flat base.",
        "Two is the only even prime number."),
    3: ("A triangle has three sides and three corners.",
        "Traffic lights show three colours: red, amber and green.",
        "The digit 3 looks like two small bumps stacked on top of each other.",
        "Three comes after two and before four."),
    4: ("Most cats and dogs walk on four legs.",
        "A square has four equal sides.",
        "There are four seasons in a year: spring, summer, autumn and winter.",
        "The digit 4 is drawn with a sharp corner and a crossing vertical line."),
    5: ("A hand has five fingers, counting the thumb.",
        "Five is half of ten.",
        "Many starfish have five arms.",
        "The digit 5 has a flat top, a short stem and a round belly."),
    6: ("An insect has six legs.",
        "A cube has six faces, just like a dice.",
        "Half a dozen eggs is six eggs.",
        "The digit 6 looks like a loop with a tail curling up from it."),
    7: ("Seven is the number of days in a week.",
        "A rainbow is usually said to have seven colours.",
        "The digit 7 is a flat line on top with a slanted stroke going down.",
        "Seven is a prime number that comes right after six."),
    8: ("A spider has eight legs.",
        "A stop sign is an octagon, a shape with eight sides.",
        "The digit 8 is made of two loops, one above the other.",
        "Eight is two times four."),
    9: ("Nine is three times three.",
        "The digit 9 is a small loop on top of a stem.",
        "Nine is the largest number written with a single digit.",
        "A baseball team fields nine players at a time."),
}

ATTRIBUTION = """\
# Demo corpus: sources and licences

This folder is a small, class-balanced slice of two public datasets plus texts written for
crossmodal. It is rebuilt by `scripts/build_demo_corpus.py`.

## audio/ — Free Spoken Digit Dataset (FSDD)
- {n_audio} recordings: the official test split (take index 0–4) of every speaker, copied
  unchanged and keeping their original names `{{digit}}_{{speaker}}_{{index}}.wav`.
- Source: Free Spoken Digit Dataset (FSDD), Z. Jackson et al.,
  https://github.com/Jakobovski/free-spoken-digit-dataset
- Licence: Creative Commons Attribution-ShareAlike 4.0 International (CC BY-SA 4.0),
  https://creativecommons.org/licenses/by-sa/4.0/

## images/ — MNIST handwritten digits
- {n_images} images from the MNIST test set (t10k), {per_digit} per digit, chosen with a fixed
  seed. Changes: converted from the IDX format to 28×28 grayscale PNG files named
  `mnist_t10k_{{index}}_{{digit}}.png`, where index is the image's position in t10k.
- Source: the MNIST database of handwritten digits, Y. LeCun, C. Cortes, C. J. C. Burges.
- Licence: Creative Commons Attribution-ShareAlike 3.0 (CC BY-SA 3.0),
  https://creativecommons.org/licenses/by-sa/3.0/

## The texts and captions in items.jsonl
- {n_text} short texts about the digits and {n_captions} captions (held-out caption templates
  of `scripts/starter/digits_world.py`), written for crossmodal and distributed under the
  same licence as the crossmodal source code.

The audio and image files remain under their original licences (share-alike): if you
redistribute or adapt them, keep this attribution and the same licence terms.
"""


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Build the demo corpus shipped in the repo.")
    parser.add_argument("--data", type=Path, required=True,
                        help="folder holding mnist/ (IDX files) and fsdd/recordings/")
    parser.add_argument("--out", type=Path, default=Path("crossmodal/demo/corpus"),
                        help="output folder (default: crossmodal/demo/corpus)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    return parser.parse_args(argv)


def _write_images(data_dir: Path, out: Path) -> list[dict]:
    images, labels = load_mnist(data_dir / "mnist", "t10k")
    rows = []
    for index in select_class_balanced(labels, IMAGES_PER_DIGIT, SELECTION_SEED):
        label = int(labels[index])
        rel = f"images/mnist_t10k_{int(index):05d}_{label}.png"
        save_png_atomic(images[index], out / rel)
        rows.append({"modality": "image", "path": rel, "label": str(label),
                     "meta": {"source": "mnist-t10k", "index": int(index)}})
    return rows


def _copy_audio(data_dir: Path, out: Path) -> list[dict]:
    rows = []
    (out / "audio").mkdir(parents=True, exist_ok=True)
    for rec in fsdd_recordings(data_dir / "fsdd" / "recordings"):
        if rec.index not in FSDD_TEST_INDEXES:
            continue
        rel = f"audio/{rec.path.name}"
        tmp = out / "audio" / f".{rec.path.name}.tmp"
        shutil.copyfile(rec.path, tmp)
        tmp.replace(out / rel)
        rows.append({"modality": "audio", "path": rel, "label": rec.digit,
                     "meta": {"speaker": rec.speaker, "index": rec.index}})
    return rows


def _notes() -> list[dict]:
    """Short texts about each digit, inline in the item list (no loose copies: the demo indexes
    the list, and a loose copy would be a second item with the same text)."""
    return [{"modality": "text", "text": snippet, "label": str(digit), "meta": {"source": "note"}}
            for digit, snippets in SNIPPETS.items() for snippet in snippets]


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Drop files a previous build wrote that this one did not, so the corpus matches its item list."""
    for sub in ("images", "audio", "text"):
        folder = out / sub
        for path in folder.iterdir() if folder.is_dir() else ():
            if path.is_file() and f"{sub}/{path.name}" not in keep:
                LOG.info("removing stale %s", path)
                path.unlink()
    if (out / "text").is_dir() and not any((out / "text").iterdir()):
        (out / "text").rmdir()


def build(data_dir: Path, out: Path) -> dict:
    """Write the corpus and return a summary of what it holds."""
    out.mkdir(parents=True, exist_ok=True)
    image_rows = _write_images(data_dir, out)
    audio_rows = _copy_audio(data_dir, out)
    text_rows = _notes()
    caption_rows = [{"modality": "text", "text": text, "label": label,
                     "meta": {"source": "caption"}} for text, label in captions("heldout")]
    rows = image_rows + audio_rows + text_rows + caption_rows
    _remove_stale(out, {row["path"] for row in image_rows + audio_rows})
    write_item_list(out / "items.jsonl", rows)
    (out / "ATTRIBUTION.md").write_text(ATTRIBUTION.format(
        n_audio=len(audio_rows), n_images=len(image_rows), per_digit=IMAGES_PER_DIGIT,
        n_text=len(text_rows), n_captions=len(caption_rows)), encoding="utf-8")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    if size > SIZE_LIMIT_BYTES:
        LOG.warning("demo corpus is %.1f MB, over the %.0f MB budget", size / 2**20,
                    SIZE_LIMIT_BYTES / 2**20)
    return {"out": str(out), "bytes": size,
            "items": dict(sorted(Counter(row["modality"] for row in rows).items())),
            "files": {"images": len(image_rows), "audio": len(audio_rows)},
            "captions": len(caption_rows)}


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = build(args.data, args.out)
    except CrossmodalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
