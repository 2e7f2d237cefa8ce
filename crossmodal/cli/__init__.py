"""The `crossmodal` command line: parse, call the core API, present. Only this layer prints or
exits; see `output.py` for the exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from crossmodal.cli import commands, duplicates, maintenance, model_commands, recommend
from crossmodal.cli.output import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_SKIPPED, EXIT_USAGE, warn
from crossmodal.cli.parser import build_parser
from crossmodal.errors import CrossmodalError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": commands.cmd_demo, "index": commands.cmd_index, "search": commands.cmd_search,
    "bridge": model_commands.cmd_bridge,
    "feedback": commands.cmd_feedback, "user": commands.cmd_user, "remove": commands.cmd_remove,
    "migrate": commands.cmd_migrate, "serve": commands.cmd_serve, "train": model_commands.cmd_train,
    "eval": model_commands.cmd_eval, "models": model_commands.cmd_models, "check": maintenance.cmd_check,
    "duplicates": duplicates.cmd_duplicates, "recommend": recommend.cmd_recommend, "similar": recommend.cmd_similar,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("numba", "PIL", "urllib3", "filelock", "root"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    try:
        return COMMANDS[args.command](args)
    except CrossmodalError as exc:
        warn(f"error: {exc}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        warn("interrupted")
        return EXIT_INTERRUPTED


__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_SKIPPED", "EXIT_USAGE", "main"]
