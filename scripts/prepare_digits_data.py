"""Turn raw MNIST + FSDD downloads into the digits-world item lists the trainer reads.

Example: python scripts/prepare_digits_data.py --data ../shared/data --holdout-speakers theo
Prints a JSON summary (items per item list and modality) to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from pathlib import Path

# Scripts run from a checkout, not an installed package: make `crossmodal` importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# Run from a checkout: the research package `starter` lives beside this script.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from starter.digits_world import write_digits_lists

from crossmodal.errors import CrossmodalError
from crossmodal.ingest.item_list import read_item_list


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Extract MNIST to PNGs and write train/eval/holdout JSONL item lists.")
    parser.add_argument("--data", type=Path, required=True,
                        help="folder holding mnist/ (IDX files) and fsdd/recordings/")
    parser.add_argument("--out", type=Path, default=Path("build/digits"),
                        help="output folder for PNGs and item lists (default: build/digits)")
    parser.add_argument("--holdout-speakers", default="",
                        help="comma-separated FSDD speakers to leave out of training, e.g. theo,lucas")
    parser.add_argument("--mnist-train-limit", type=int, default=None,
                        help="use only the first N MNIST training images")
    parser.add_argument("--mnist-test-limit", type=int, default=None,
                        help="use only the first N MNIST t10k images")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    return parser.parse_args(argv)


def summarise(paths: dict[str, Path]) -> dict:
    """Count items per modality in each item list, read back so the summary reflects the files."""
    summary: dict[str, dict] = {}
    for name, path in paths.items():
        counts = Counter(item.modality for item in read_item_list(path))
        summary[name] = {"path": str(path), "items": sum(counts.values()),
                         "by_modality": dict(sorted(counts.items()))}
    return summary


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    holdout = [s.strip() for s in args.holdout_speakers.split(",") if s.strip()]
    try:
        paths = write_digits_lists(args.data, args.out, holdout_speakers=holdout,
                                       mnist_train_limit=args.mnist_train_limit,
                                       mnist_test_limit=args.mnist_test_limit)
        summary = summarise(paths)
    except CrossmodalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(args.out), "holdout_speakers": holdout, "lists": summary},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
