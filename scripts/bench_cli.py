"""Benchmark: a one-shot text search from the command line, and the server's start-up, against
the time `python -c "import torch"` takes in the same run.

1. One-shot CLI: ``crossmodal search --collection demo --text seven`` (the starter model's demo
   collection, built first when missing) and ``python -c "import torch"``, each a fresh
   process, alternating, ``--runs`` times each (after one untimed run of each); medians of the
   wall times and their ratio (target: at most 1.0). One more run under ``-X importtime`` says
   whether the search imported torch, open_clip, torchaudio, librosa or transformers.
2. Server start-up: ``crossmodal serve --collection demo`` on a free loopback port,
   ``--serve-runs`` times: seconds from the start of the process until ``/api/health`` first
   answers 200, until a first text search answers, and until a first image search answers
   (that one needs the model, which loads in the background after the server is up).

Child processes run with Python's bytecode cache on (an installed package has its compiled
files), unless ``--no-bytecode-cache``: this machine's environment turns it off, which makes
every start of crossmodal compile its modules again.

    python scripts/bench_cli.py [--runs 5] [--serve-runs 3] [--root indexes]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

HEAVY = ("torch", "open_clip", "torchaudio", "librosa", "transformers")
PYTHON_ENTRY = ["-m", "crossmodal"]
"""How Python runs crossmodal for the one run under ``-X importtime``."""
QUERY_IMAGE = Path(__file__).resolve().parent.parent / "crossmodal" / "demo" / "corpus" / "images"


def child_env(bytecode_cache: bool) -> dict[str, str]:
    env = dict(os.environ)
    if bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def crossmodal_command() -> list[str]:
    """The installed ``crossmodal`` script beside this Python, else ``python -m crossmodal``."""
    script = Path(sys.executable).with_name("crossmodal")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "crossmodal"]


def timed(cmd: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one process, which must succeed."""
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return seconds


def ensure_demo(root: Path, env: dict[str, str]) -> None:
    """The demo collection, built when missing; one built before calibrations were stored is
    brought up to date (its calibration published) by the same command, which embeds nothing."""
    manifest = root / "demo" / "manifest.json"
    if manifest.is_file() and "calibration" in json.loads(manifest.read_text()):
        return
    print("building the demo collection ...", file=sys.stderr)
    subprocess.run([*crossmodal_command(), "demo", "--no-serve", "-q", "--root", str(root)], env=env, check=True,
                   stdout=subprocess.DEVNULL)


def one_shot(root: Path, runs: int, env: dict[str, str]) -> dict:
    search = [*crossmodal_command(), "search", "--collection", "demo", "--root", str(root), "--text", "seven"]
    torch = [sys.executable, "-c", "import torch"]
    timed(search, env), timed(torch, env)  # untimed: the page cache and the bytecode cache, for both
    times: dict[str, list[float]] = {"search": [], "import_torch": []}
    for i in range(runs):
        print(f"run {i + 1}/{runs}", file=sys.stderr)
        times["search"].append(timed(search, env))
        times["import_torch"].append(timed(torch, env))
    options = search[len(crossmodal_command()):]
    traced = subprocess.run([sys.executable, "-X", "importtime", *PYTHON_ENTRY, *options], env=env,
                            capture_output=True, text=True)
    imported = sorted({m.group(1).split(".")[0] for m in re.finditer(r"\|\s+([\w.]+)\s*$", traced.stderr, re.M)}
                      & set(HEAVY))
    search_s, torch_s = statistics.median(times["search"]), statistics.median(times["import_torch"])
    return {"command": " ".join(["crossmodal", *options]),
            "baseline": 'python -c "import torch"', "runs": runs,
            "search_s": [round(t, 3) for t in times["search"]],
            "import_torch_s": [round(t, 3) for t in times["import_torch"]],
            "search_median_s": round(search_s, 3), "import_torch_median_s": round(torch_s, 3),
            "ratio": round(search_s / torch_s, 3), "target_ratio": 1.0, "target_met": search_s <= torch_s,
            "heavy_modules_imported": imported}


def multipart(field: str, name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post(url: str, body: bytes, content_type: str) -> dict:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.loads(answer.read())


def serve_once(root: Path, env: dict[str, str]) -> dict:
    """One server start: seconds until health, a text search and an image search first answer."""
    cmd = [*crossmodal_command(), "serve", "--collection", "demo", "--root", str(root), "--host", "127.0.0.1",
           "--port", "0", "-q"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        found = re.search(r"(http://[\d.]+:\d+)/", line)
        if not found:
            raise SystemExit(f"the server did not start: {line!r}\n{proc.stderr.read()[-3000:]}")
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        base = found.group(1)
        while True:
            try:
                with urllib.request.urlopen(base + "/api/health", timeout=60) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.01)
        health = time.perf_counter() - started
        text = post(base + "/api/search", json.dumps({"text": "seven", "k": 3}).encode(), "application/json")
        text_s = time.perf_counter() - started
        image = sorted(QUERY_IMAGE.glob("*_7.png"))[0]
        body, kind = multipart("image", image.name, image.read_bytes())
        shown = post(base + "/api/search", body, kind)
        image_s = time.perf_counter() - started
        if not text["results"] or not shown["results"]:
            raise SystemExit("a search the server answered found nothing")
        return {"health_s": round(health, 3), "first_text_search_s": round(text_s, 3),
                "text_search_answered_in_s": round(text_s - health, 3), "first_image_search_s": round(image_s, 3)}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_start(root: Path, runs: int, env: dict[str, str]) -> dict:
    runs_out = []
    for i in range(runs):
        print(f"serve run {i + 1}/{runs}", file=sys.stderr)
        runs_out.append(serve_once(root, env))
    return {"command": "crossmodal serve --collection demo", "runs": runs_out,
            **{f"{key}_median": round(statistics.median(r[key] for r in runs_out), 3) for key in runs_out[0]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each command (default 5)")
    parser.add_argument("--serve-runs", type=int, default=3, help="server starts to time (default 3; 0: none)")
    parser.add_argument("--root", type=Path, default=Path("indexes"), help="folder holding the demo collection")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="keep PYTHONDONTWRITEBYTECODE as the environment has it")
    args = parser.parse_args()
    env = child_env(not args.no_bytecode_cache)
    root = args.root.resolve()
    ensure_demo(root, env)
    out = {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
           "bytecode_cache": not args.no_bytecode_cache, "one_shot": one_shot(root, args.runs, env)}
    if args.serve_runs > 0:
        out["serve"] = serve_start(root, args.serve_runs, env)
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
