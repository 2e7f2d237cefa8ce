"""A folder of near-duplicates made from the demo corpus: an image with a resized and a JPEG
copy, a sound with FLAC, Ogg and quieter copies, a text in two files, and beside each the hard
negative a grouping must not swallow (another 3; another take of "seven" by the same speaker;
another text)."""

from __future__ import annotations

import shutil
from pathlib import Path

import soundfile as sf
from PIL import Image

from crossmodal.demo.showcase import CORPUS_DIR

GROUPS = {
    "image": {"three.png", "three_big.png", "three.jpg"},
    "audio": {"seven.wav", "seven.flac", "seven.ogg", "seven_quiet.wav"},
    "text": {"swans.txt", "swans_copy.md"},
}
DISTINCT = {"image": "other_three.png", "audio": "seven_again.wav", "text": "maids.txt"}


def write_copies(folder: Path) -> Path:
    """The files of GROUPS and DISTINCT in ``folder`` (12 files, 12 items)."""
    folder.mkdir(parents=True, exist_ok=True)
    threes = sorted((CORPUS_DIR / "images").glob("*_3.png"))
    shutil.copy(threes[0], folder / "three.png")
    shutil.copy(threes[1], folder / "other_three.png")
    image = Image.open(threes[0])
    image.resize((84, 84), Image.Resampling.LANCZOS).save(folder / "three_big.png")
    image.convert("RGB").save(folder / "three.jpg", quality=70)
    takes = sorted((CORPUS_DIR / "audio").glob("7_george_*.wav"))
    shutil.copy(takes[0], folder / "seven.wav")
    shutil.copy(takes[1], folder / "seven_again.wav")
    wave, rate = sf.read(takes[0], dtype="float32")
    sf.write(folder / "seven.flac", wave, rate)
    sf.write(folder / "seven.ogg", wave, rate, format="OGG", subtype="VORBIS")
    sf.write(folder / "seven_quiet.wav", wave * 0.4, rate)
    (folder / "swans.txt").write_text("Seven swans a-swimming.\n")
    (folder / "swans_copy.md").write_text("  seven SWANS\n a-swimming.")
    (folder / "maids.txt").write_text("Eight maids a-milking.\n")
    return folder


def names(uris) -> set[str]:
    """The file names of some uris."""
    return {Path(u).name for u in uris}
