"""Running the command line in-process, as a test sees it."""

from __future__ import annotations

from crossmodal.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `crossmodal ARGV...`."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
