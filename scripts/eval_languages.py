#!/usr/bin/env python
"""Text->image and text->audio recall@k and mAP per query language (issue 23's table).

Example (the item list comes from `scripts/prepare_digits_data.py --data ../shared/data`):
    python scripts/eval_languages.py --list build/digits/eval_multilingual.jsonl --model starter
Every text item of the list must carry its language in ``meta.lang``; the list's images and
audio are the galleries. Prints JSON ({language: {direction: metrics}}); --markdown prints the
table docs/starter-model.md shows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Scripts run from a checkout, not an installed package: make `crossmodal` and `starter` importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from starter.by_language import evaluate_list_by_language

from crossmodal.aligner.registry import load_aligner
from crossmodal.errors import CrossmodalError


def markdown(scores: dict) -> str:
    """One row per language: recall@1 and mAP of both directions, and the query count."""
    lines = ["| language | text→image R@1 | text→image mAP | text→audio R@1 | text→audio mAP | queries |",
             "|---|---|---|---|---|---|"]
    for lang, directions in scores.items():
        image, audio = directions["text->image"], directions["text->audio"]
        lines.append(f"| {lang} | {image['recall@1']:.4f} | {image['mAP']:.4f} | {audio['recall@1']:.4f} | "
                     f"{audio['mAP']:.4f} | {image['queries']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", type=Path, required=True, help="item list whose texts carry meta.lang")
    parser.add_argument("--model", default="starter", help="shipped model name or checkpoint folder")
    parser.add_argument("--markdown", action="store_true", help="print the table instead of JSON")
    args = parser.parse_args(argv)
    try:
        scores = evaluate_list_by_language(args.list, load_aligner(args.model))
    except CrossmodalError as exc:
        print(f"eval_languages: error: {exc}", file=sys.stderr)
        return 1
    print(markdown(scores) if args.markdown else json.dumps(scores, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
