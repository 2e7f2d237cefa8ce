#!/usr/bin/env python
"""Write spoken digits from espeak-ng's synthetic voices as a labelled eval manifest.

A quick check on voices nothing in FSDD sounds like (needs `apt-get install espeak-ng`):
    python scripts/make_tts_digits.py --out build/tts
    crossmodal eval --manifest build/tts/manifest.jsonl --directions 'audio->text,audio->image'
The manifest also lists the held-out captions and the demo corpus images as galleries.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

from crossmodal.demo.showcase import CORPUS_DIR
from crossmodal.manifest import read_manifest, write_manifest
from crossmodal.training.digits_world import DIGIT_WORDS, captions

VOICES = ("en", "en-us", "en-gb-x-rp", "en+f3", "en+m7", "en-us+f2", "en+klatt")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("build/tts"))
    parser.add_argument("--voices", default=",".join(VOICES), help="comma-separated espeak-ng voices")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        print("make_tts_digits: espeak-ng not found; install it with apt-get install espeak-ng", file=sys.stderr)
        return 1
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for voice in args.voices.split(","):
        for digit, word in enumerate(DIGIT_WORDS):
            wav = args.out / f"{voice.replace('+', '_')}_{digit}.wav"
            speed = rng.randint(120, 190)
            subprocess.run([espeak, "-v", voice, "-s", str(speed), "-w", str(wav), word], check=True,
                           capture_output=True)
            rows.append({"modality": "audio", "path": wav.name, "label": str(digit),
                         "meta": {"voice": voice, "words_per_minute": speed}})
    rows += [{"modality": "text", "text": text, "label": label} for text, label in captions("heldout")]
    rows += [{"modality": "image", "path": str(it.path.resolve()), "label": it.label}
             for it in read_manifest(CORPUS_DIR / "manifest.jsonl") if it.modality == "image"]
    count = write_manifest(args.out / "manifest.jsonl", rows)
    json.dump({"manifest": str(args.out / "manifest.jsonl"), "items": count}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
