"""What the browser tests share: finding Debian's Chromium, serving a collection with the real
`crossmodal serve` on a free loopback port, and reading result cards off the page."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")
INSTALL_HINT = ("Chromium not found; install it with `sudo apt-get install chromium` (Debian/Ubuntu) "
                "and `pip install playwright` to run the browser tests")


def chromium_path() -> str | None:
    """Chromium's executable: ``CROSSMODAL_CHROMIUM``, else the usual Debian paths or PATH."""
    env = os.environ.get("CROSSMODAL_CHROMIUM")
    for candidate in ((env,) if env else ()) + CHROMIUM_CANDIDATES:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


@contextmanager
def serving(folder: Path | None, *options: str) -> Iterator[str]:
    """``crossmodal serve`` on ``folder`` (or as ``options`` say, e.g. a search node) in its own
    process; yields its URL and checks that it shuts down cleanly on SIGINT."""
    where = ["--collection", str(folder)] if folder is not None else []
    with subprocess.Popen([sys.executable, "-m", "crossmodal", "serve", *where, *options, "--port", "0", "-q"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}) as proc:
        try:
            yield re.search(r"http://\S+/", proc.stdout.readline()).group(0)
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0, "the server did not shut down cleanly on SIGINT"


def cards(page) -> list[dict]:
    """The result cards on the page: id, label, modality, score text and, for a recommendation,
    its reasons (the first in the summary line, all of them inside)."""
    return page.eval_on_selector_all(
        "#results li.result", "els => els.map(e => ({id: Number(e.dataset.id), label: e.dataset.label, "
        "modality: e.dataset.modality, score: e.querySelector('.score').textContent, "
        "why: e.querySelector('.why summary')?.textContent ?? null, "
        "hover: e.querySelector('.why summary')?.title ?? null, "
        "reasons: [...e.querySelectorAll('.why .reason')].map(r => r.textContent)}))")
