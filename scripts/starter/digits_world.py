"""The "digits world": MNIST images, FSDD speech and digit captions as one tri-modal dataset.

MNIST and the Free Spoken Digit Dataset share their ten classes, so a handwritten 7, a
recording of someone saying "seven" and the text "seven" all belong together. This module
turns the raw downloads into JSONL item lists (see `crossmodal.ingest.item_list`) that the
trainer and the evaluator read, keeping the official train/test splits apart and optionally
holding out whole speakers to measure generalisation to unseen voices. It builds the starter
model's data and is research code: it lives beside the scripts, not in the package.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from crossmodal.errors import ConfigError
from crossmodal.ingest.item_list import write_item_list

from .mnist import load_mnist
from .multilingual import multilingual_captions

LOG = logging.getLogger(__name__)

DIGIT_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
)

# Placeholders: {numeral} "7", {word} "seven", {Word} "Seven", {a_word} "a seven" / "an eight",
# {a_numeral} "a 7" / "an 8". The two sets must never share a phrasing: held-out captions
# measure whether the text tower generalises beyond the wordings it was trained on.
TRAIN_TEMPLATES: tuple[str, ...] = (
    "{numeral}",
    "{word}",
    "{Word}",
    "the digit {word}",
    "the digit {numeral}",
    "the number {numeral}",
    "the number {word}",
    "number {numeral}",
    "the figure {numeral}",
    "the word {word}",
    "digit: {numeral}",
    "label: {word}",
    "class {numeral}",
    "{numeral} ({word})",
    "{word} ({numeral})",
    "it's {a_word}",
    "this is {a_word}",
    "a handwritten {word}",
    "a handwritten {numeral}",
    "handwritten numeral {numeral}",
    "a written {word}",
    "a photo of {a_numeral}",
    "an image of the digit {numeral}",
    "a picture of a handwritten {word}",
    "a scanned handwritten {numeral}",
    "a black and white image of {a_numeral}",
    "a grayscale photo of a handwritten {numeral}",
    "a drawing of the number {numeral}",
    "a pencil sketch of the number {word}",
    "a digit that looks like {a_numeral}",
    "a quick scribble of {a_word}",
    "the number {word}, written by hand",
    "someone saying {word}",
    "a spoken {word}",
    "the spoken word {word}",
    "a voice saying {word}",
    "a recording of a person saying {word}",
    "a recording of the word {word}",
    "a microphone recording of {a_word}",
    "a short clip of a person saying the number {word}",
    "audio of someone counting: {word}",
    "a speaker pronouncing {word}",
    "the sound of the word {word}",
    "an utterance of {word}",
    "somebody says {word} out loud",
    "a person reading out the number {numeral}",
)

HELDOUT_TEMPLATES: tuple[str, ...] = (
    "digit {word}",
    "the value {numeral}",
    "it says {numeral}",
    "the numeral for {word}",
    "the digit written as {numeral}",
    "a hand-drawn {numeral}",
    "an ink drawing of the digit {word}",
    "a snapshot of a written {numeral}",
    "number {word} written in pen",
    "a handwritten figure showing {a_word}",
    "an image containing the number {numeral}",
    "a sample of handwriting: {numeral}",
    "someone pronouncing the number {word}",
    "a voice recording: {word}",
    "a spoken digit, {word}",
    "an audio clip of the word {word}",
    "a person counting out loud: {word}",
    "{word}, said aloud",
    "a speaker says the digit {numeral}",
)

_CAPTION_SPLITS = {"train": TRAIN_TEMPLATES, "heldout": HELDOUT_TEMPLATES}
_FSDD_NAME = re.compile(r"^(?P<digit>[0-9])_(?P<speaker>[^_]+)_(?P<index>[0-9]+)\.wav$")
FSDD_TEST_INDEXES = range(5)
FSDD_TRAIN_INDEXES = range(5, 50)


# ---------------------------------------------------------------------------------- captions


def _fill(template: str, digit: int) -> str:
    word = DIGIT_WORDS[digit]
    article = "an" if word[0] in "aeiou" else "a"
    return template.format(numeral=str(digit), word=word, Word=word.capitalize(),
                           a_word=f"{article} {word}", a_numeral=f"{article} {digit}")


def captions(split: str) -> list[tuple[str, str]]:
    """All captions of one template set as (text, label) pairs, template by template.

    "train" captions feed training; "heldout" ones use phrasings the model never saw, so text
    retrieval scores reflect understanding rather than memorised strings.
    """
    if split not in _CAPTION_SPLITS:
        raise ConfigError(f"unknown caption split {split!r}; expected one of {sorted(_CAPTION_SPLITS)}")
    return [(_fill(template, digit), str(digit))
            for template in _CAPTION_SPLITS[split] for digit in range(10)]


# -------------------------------------------------------------------------------------- FSDD


@dataclass(frozen=True)
class FsddRecording:
    """One FSDD clip, with the facts its file name encodes."""

    path: Path
    digit: str
    speaker: str
    index: int


def parse_fsdd_name(path: str | Path) -> FsddRecording | None:
    """Parse `{digit}_{speaker}_{index}.wav`; None when the name does not follow it."""
    path = Path(path)
    match = _FSDD_NAME.match(path.name)
    if match is None:
        return None
    return FsddRecording(path, match["digit"], match["speaker"], int(match["index"]))


def fsdd_recordings(recordings_dir: str | Path) -> list[FsddRecording]:
    """List the FSDD clips in a folder, sorted by file name; stray files are skipped, not fatal."""
    recordings_dir = Path(recordings_dir)
    if not recordings_dir.is_dir():
        raise ConfigError(f"FSDD recordings folder {recordings_dir} does not exist")
    found: list[FsddRecording] = []
    ignored: list[str] = []
    for entry in sorted(recordings_dir.iterdir(), key=lambda p: p.name):
        if not entry.is_file():
            continue
        rec = parse_fsdd_name(entry)
        if rec is None:
            ignored.append(entry.name)
        else:
            found.append(rec)
    if ignored:
        LOG.warning("ignored %d file(s) in %s not named {digit}_{speaker}_{index}.wav: %s%s",
                    len(ignored), recordings_dir, ", ".join(ignored[:5]),
                    ", ..." if len(ignored) > 5 else "")
    return found


def fsdd_speakers(recs: Iterable[FsddRecording]) -> list[str]:
    """The distinct speakers, sorted, so holdout choices can be checked and reported."""
    return sorted({rec.speaker for rec in recs})


# ----------------------------------------------------------------------------------- helpers


def select_class_balanced(labels: Sequence[int] | np.ndarray, per_class: int,
                          seed: int) -> np.ndarray:
    """Pick `per_class` indexes of every label present, reproducibly, returned in ascending order.

    A balanced subset keeps a small demo or probe set from being dominated by common classes.
    """
    if per_class < 0:
        raise ConfigError(f"per_class must be >= 0, got {per_class}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        if len(members) < per_class:
            raise ConfigError(f"class {value!r} has {len(members)} items, fewer than {per_class}")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def save_png_atomic(pixels: np.ndarray, path: Path) -> None:
    """Write a grayscale PNG via a temporary file, so an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(tmp, format="PNG")
    os.replace(tmp, path)


def _png_is_current(path: Path, shape: tuple[int, int]) -> bool:
    """A PNG with the right size is taken as already extracted; writes are atomic, so it is whole."""
    try:
        with Image.open(path) as img:
            return img.size == (shape[1], shape[0]) and img.mode == "L"
    except (OSError, ValueError):
        return False


def _extract_mnist(images: np.ndarray, labels: np.ndarray, out_dir: Path, rel_dir: str,
                   split_name: str) -> list[dict]:
    """Write each image as `rel_dir/{index:05d}_{label}.png` and return its item-list rows."""
    rows: list[dict] = []
    written = 0
    for index, (pixels, label) in enumerate(zip(images, labels)):
        rel = f"{rel_dir}/{index:05d}_{int(label)}.png"
        target = out_dir / rel
        if not _png_is_current(target, pixels.shape):
            save_png_atomic(pixels, target)
            written += 1
        rows.append({"modality": "image", "path": rel, "label": str(int(label)),
                     "meta": {"source": f"mnist-{split_name}", "index": index}})
    LOG.info("MNIST %s: %d images, %d newly written under %s", split_name, len(rows), written,
             out_dir / rel_dir)
    return rows


FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts")


def find_fonts(dirs: Iterable[Path] = FONT_DIRS) -> list[Path]:
    """TrueType/OpenType files on this machine, sorted so the train/eval font split is stable."""
    found: set[Path] = set()
    for folder in dirs:
        if folder.is_dir():
            found.update(p for p in folder.rglob("*") if p.suffix.lower() in (".ttf", ".otf"))
    return sorted(found)


def split_fonts(fonts: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Every fourth font is kept for evaluation, so typeset accuracy is measured on unseen faces."""
    return [f for i, f in enumerate(fonts) if i % 4 != 3], [f for i, f in enumerate(fonts) if i % 4 == 3]


def render_typeset_digits(out_dir: Path, rel_dir: str, fonts: Sequence[Path | None], per_digit: int,
                          seed: int) -> list[dict]:
    """Draw each digit in the given fonts (None = Pillow's built-in font) at random sizes,
    weights, angles and polarities; returns item-list rows for the PNGs written under out_dir."""
    from PIL import ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    rows = []
    folder = out_dir / rel_dir
    folder.mkdir(parents=True, exist_ok=True)
    for digit in range(10):
        for k in range(per_digit):
            font_path = fonts[int(rng.integers(len(fonts)))]
            size = int(rng.integers(28, 60))
            font = ImageFont.load_default(size) if font_path is None else ImageFont.truetype(str(font_path), size)
            dark_ink = bool(rng.random() < 0.5)
            canvas = Image.new("L", (80, 80), 255 if dark_ink else 0)
            draw = ImageDraw.Draw(canvas)
            draw.text((40 + rng.integers(-10, 11), 40 + rng.integers(-10, 11)), str(digit), anchor="mm",
                      font=font, fill=0 if dark_ink else 255, stroke_width=int(rng.integers(0, 3)),
                      stroke_fill=0 if dark_ink else 255)
            canvas = canvas.rotate(float(rng.uniform(-12, 12)), fillcolor=255 if dark_ink else 0)
            name = f"{rel_dir}/typeset_{digit}_{k:04d}.png"
            save_png_atomic(np.asarray(canvas), out_dir / name)
            source = "pillow-default" if font_path is None else font_path.name
            rows.append({"modality": "image", "path": name, "label": str(digit),
                         "meta": {"source": "typeset", "font": source}})
    return rows


def _audio_rows(recs: Iterable[FsddRecording]) -> list[dict]:
    """Audio rows point at the original wavs by absolute path: the data folder may be read-only."""
    return [{"modality": "audio", "path": str(rec.path.resolve()), "label": rec.digit,
             "meta": {"speaker": rec.speaker, "index": rec.index}} for rec in recs]


def _text_rows(split: str) -> list[dict]:
    return [{"modality": "text", "text": text, "label": label} for text, label in captions(split)]


def _multilingual_rows(split: str) -> list[dict]:
    """The other languages' captions of one split, each tagged with its language in ``meta``."""
    return [{"modality": "text", "text": text, "label": label, "meta": {"lang": lang}}
            for text, label, lang in multilingual_captions(split)]


def _limit(images: np.ndarray, labels: np.ndarray, limit: int | None,
           name: str) -> tuple[np.ndarray, np.ndarray]:
    if limit is None:
        return images, labels
    if limit < 0:
        raise ConfigError(f"{name} must be >= 0, got {limit}")
    return images[:limit], labels[:limit]


def write_digits_lists(
    data_dir: Path,
    out_dir: Path,
    holdout_speakers: Sequence[str] = (),
    mnist_train_limit: int | None = None,
    mnist_test_limit: int | None = None,
    typeset_per_digit: int = 0,
    seed: int = 0,
) -> dict[str, Path]:
    """Extract MNIST to PNGs under `out_dir` and write train/eval/holdout item lists there.

    `data_dir` holds `mnist/` (the four IDX files) and `fsdd/recordings/`. Returns item list
    name ("train", "eval", "eval_multilingual", "holdout_<speaker>", "typeset_eval") -> path. Held-out speakers are
    absent from train.jsonl altogether and get their own item list with all fifty takes of each
    digit. With ``typeset_per_digit`` > 0, digits drawn in three quarters of the machine's fonts
    (and Pillow's own) join the training images, and the remaining fonts make `typeset_eval`.
    """
    data_dir = Path(data_dir)
    out_dir = Path(out_dir)
    holdout = list(dict.fromkeys(holdout_speakers))

    recs = fsdd_recordings(data_dir / "fsdd" / "recordings")
    speakers = fsdd_speakers(recs)
    unknown = [s for s in holdout if s not in speakers]
    if unknown:
        raise ConfigError(f"unknown holdout speaker(s) {unknown}; FSDD speakers are {speakers}")
    if speakers and set(holdout) >= set(speakers):
        LOG.warning("every FSDD speaker is held out: train.jsonl will hold no audio")

    train_images, train_labels = _limit(*load_mnist(data_dir / "mnist", "train"),
                                        mnist_train_limit, "mnist_train_limit")
    test_images, test_labels = _limit(*load_mnist(data_dir / "mnist", "t10k"),
                                      mnist_test_limit, "mnist_test_limit")

    out_dir.mkdir(parents=True, exist_ok=True)
    train_image_rows = _extract_mnist(train_images, train_labels, out_dir, "mnist/train", "train")
    test_image_rows = _extract_mnist(test_images, test_labels, out_dir, "mnist/t10k", "t10k")
    heldout_text = _text_rows("heldout")

    lists: dict[str, list[dict]] = {
        "train": train_image_rows
        + _audio_rows(r for r in recs
                      if r.index in FSDD_TRAIN_INDEXES and r.speaker not in holdout)
        + _text_rows("train") + _multilingual_rows("train"),
        "eval": test_image_rows
        + _audio_rows(r for r in recs if r.index in FSDD_TEST_INDEXES)
        + heldout_text,
    }
    # The official split again, with every language's held-out captions as text queries
    # (English tagged "en"); `scripts/eval_languages.py` scores it language by language.
    lists["eval_multilingual"] = (
        lists["eval"][:-len(heldout_text)]
        + [{**row, "meta": {"lang": "en"}} for row in heldout_text] + _multilingual_rows("heldout"))
    if typeset_per_digit > 0:
        train_fonts, eval_fonts = split_fonts(find_fonts())
        lists["train"] += render_typeset_digits(out_dir, "typeset/train", [None, *train_fonts],
                                                    typeset_per_digit, seed)
        if eval_fonts:
            lists["typeset_eval"] = render_typeset_digits(
                out_dir, "typeset/eval", eval_fonts, max(10, typeset_per_digit // 5), seed + 1) + heldout_text
    for speaker in holdout:
        lists[f"holdout_{speaker}"] = (
            _audio_rows(r for r in recs if r.speaker == speaker) + test_image_rows + heldout_text
        )

    paths: dict[str, Path] = {}
    for name, rows in lists.items():
        path = out_dir / f"{name}.jsonl"
        count = write_item_list(path, rows)
        LOG.info("wrote %s (%d items)", path, count)
        paths[name] = path
    return paths
