"""Take the README's screenshot of the web UI: the demo collection, a real query, real results.

    python scripts/screenshot_ui.py [--out docs/web-ui.png]

Needs Chromium (`apt-get install chromium`) and Playwright (`pip install playwright`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "web-ui.png")
    parser.add_argument("--collection", "--index", dest="collection", default="demo",
                        help="collection to show (default: demo)")
    args = parser.parse_args()
    chromium = next((c for c in ("/usr/lib/chromium/chromium", shutil.which("chromium")) if c and Path(c).exists()),
                    None)
    if chromium is None:
        sys.exit("Chromium not found; install it with `apt-get install chromium`")
    subprocess.run([sys.executable, "-m", "crossmodal", "demo", "--collection", args.collection, "--no-serve", "-q"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    serve = [sys.executable, "-m", "crossmodal", "serve", "--collection", args.collection, "--port", "0", "-q"]
    with subprocess.Popen(serve,
                          cwd=ROOT, stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}) as server:
        try:
            url = re.search(r"http://\S+/", server.stdout.readline()).group(0)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                page.goto(url)
                page.fill("#user", "ana")
                page.fill("#text", "someone saying seven")
                page.set_input_files("#image", str(ROOT / "crossmodal/demo/corpus/images/mnist_t10k_00898_7.png"))
                page.fill("#k", "8")
                page.uncheck("input[name=target][value=text]")
                page.check("#explain")
                page.click("#search")
                page.wait_for_selector("#results li img")
                page.click("#results li:first-child details summary")
                page.wait_for_timeout(500)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
