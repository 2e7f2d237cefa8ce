#!/usr/bin/env python
"""Spoken digits from the local speech synthesisers, as a labelled item list.

Needs at least one of espeak-ng, flite, festival (apt-get install espeak-ng flite festival
festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts). Voices are split by identity into a
training pool and an evaluation pool, so the two never share a voice.

Training audio for the starter model (train_starter_model.py --tts-voices does this itself):
    python scripts/make_tts_digits.py --pool train --voices 240 --out build/tts-train
A check on voices nothing trained on:
    python scripts/make_tts_digits.py --pool eval --voices 60 --out build/tts-eval
    crossmodal eval --list build/tts-eval/items.jsonl --directions 'audio->text,audio->image'
The eval item list also lists the held-out captions and the demo corpus images as galleries.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

# Run from a checkout: the research package `starter` lives beside this script.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from starter.digits_world import captions
from starter.tts_voices import write_tts_list

from crossmodal.demo.showcase import CORPUS_DIR
from crossmodal.errors import ConfigError
from crossmodal.ingest.item_list import read_item_list


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("build/tts-eval"))
    parser.add_argument("--pool", choices=("train", "eval"), default="eval")
    parser.add_argument("--voices", type=int, default=60, help="synthetic speakers, each saying all ten digits")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    galleries = []
    if args.pool == "eval":
        galleries = [{"modality": "text", "text": text, "label": label} for text, label in captions("heldout")]
        galleries += [{"modality": "image", "path": str(it.path.resolve()), "label": it.label}
                      for it in read_item_list(CORPUS_DIR / "items.jsonl") if it.modality == "image"]
    def progress(clips):
        return tqdm(clips, total=10 * args.voices, desc="synthesising", unit="clip")

    try:
        path, count = write_tts_list(args.out, args.pool, args.voices, args.seed, galleries, progress)
    except ConfigError as exc:
        print(f"make_tts_digits: error: {exc}", file=sys.stderr)
        return 1
    json.dump({"item_list": str(path), "items": count}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
