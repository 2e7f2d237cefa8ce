"""A bounded loopback soak of `crossmodal serve`: good clients and hostile ones at once.

Builds a collection from the bundled demo corpus (or takes ``--collection``), starts
``python -m crossmodal serve`` on a free loopback port, and for ``--seconds`` runs ``--clients``
threads of mixed searches (text as JSON; corpus images and recordings as multipart uploads)
and feedback, each client a browser with its own user cookie; a health probe twice a second;
and a hostile thread, one request at a time, 1 / ``--hostile-rate`` s apart (a FLAC and a PNG
whose headers promise huge decodes, a truncated PNG, files of the wrong kind, a body over the
upload limit, deeply nested and mistyped JSON), while ``--half-open`` connections that sent
only part of a request are kept open throughout. The server's RSS is read from /proc. At the end the server
gets SIGINT and must stop cleanly.

Prints one JSON object: requests by kind, errors on good requests by status (must be none),
hostile answers by status (all expected 4xx), latency p50/p99 per kind, RSS before/peak/after,
and whether the server stayed up and stopped cleanly; the exit status is 0 only if all held.
Only the standard library talks HTTP (http.client, sockets, threads).

    python scripts/soak_server.py [--clients 16] [--seconds 120] [--collection PATH]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections import Counter
from http.cookies import SimpleCookie
from pathlib import Path

import numpy as np
import soundfile as sf

from crossmodal.demo.showcase import CORPUS_DIR, CORPUS_LIST

PHRASES = ["someone saying seven", "a handwritten four", "the digit zero", "nine", "a spoken three",
           "two", "eight written by hand", "somebody says one", "five", "six"]
KIND_WEIGHTS = {"text": 4, "image": 2, "audio": 2, "feedback": 1}


def build_collection(folder: Path) -> Path:
    """The demo corpus indexed through the engine into ``folder``."""
    from crossmodal.core import Engine
    from crossmodal.settings import Settings

    with Engine.open(folder, create=True, settings=Settings()) as engine:
        engine.index([CORPUS_LIST], progress=False)
    return folder


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    for field, (name, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def hostile_files(folder: Path, max_upload_mb: float) -> list[tuple[str, str, bytes, str]]:
    """(name, method path, body, content type) of each hostile request."""
    with sf.SoundFile(folder / "huge.flac", "w", samplerate=655_350, channels=8, format="FLAC",
                      subtype="PCM_16") as out:  # a minute of silence: 340 KB, 1.2 GB as float32
        block = np.zeros((1 << 20, 8), dtype=np.int16)
        for left in range(60 * 655_350, 0, -len(block)):
            out.write(block[:min(left, len(block))])
    packer = zlib.compressobj(6)  # 8000 x 5000 RGB zeros: 117 KB, 153 MiB decoded
    idat = b"".join(packer.compress(bytes(24_001 * 100)) for _ in range(50)) + packer.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    huge_png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8000, 5000, 8, 2, 0, 0, 0)) +
                chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    png = next((CORPUS_DIR / "images").glob("*.png")).read_bytes()
    wav = next((CORPUS_DIR / "audio").glob("*.wav")).read_bytes()
    nested = '{"text": ' + "[" * 20_000 + "]" * 20_000 + "}"
    cases = [("huge_flac", {"audio": ("huge.flac", (folder / "huge.flac").read_bytes())}),
             ("huge_png", {"image": ("huge.png", huge_png)}),
             ("truncated_png", {"image": ("cut.png", png[: len(png) // 2])}),
             ("text_as_image", {"image": ("note.png", b"just some words, not a picture\n" * 20)}),
             ("image_as_audio", {"audio": ("digit.wav", png)}),
             ("audio_as_image", {"image": ("clip.png", wav)}),
             ("oversized_body", {"image": ("big.png", os.urandom(int((max_upload_mb + 1) * (1 << 20))))})]
    out = [(name, "/api/search", *multipart({}, files)) for name, files in cases]
    out += [("nested_json", "/api/search", nested.encode(), "application/json"),
            ("nested_feedback", "/api/feedback", ('{"user": ' + "[" * 20_000 + "]" * 20_000 + "}").encode(),
             "application/json"),
            ("mistyped_json", "/api/search", json.dumps({"text": "seven", "targets": [1, {}]}).encode(),
             "application/json"),
            ("bad_multipart", "/api/search", b"--x\r\nnonsense", "multipart/form-data; boundary=x")]
    return out


class Soak:
    """The shared tallies of one run."""

    def __init__(self, address: tuple[str, int], pid: int, seed: int) -> None:
        self.address, self.pid = address, pid
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = {}
        self.good_errors: Counter[str] = Counter()
        self.hostile: Counter[str] = Counter()
        self.hostile_unexpected: Counter[str] = Counter()
        self.hostile_latency: dict[str, list[float]] = {}
        self.item_ids: list[int] = []
        self.stop = threading.Event()
        self.rss_peak, self.timeline = 0.0, []
        self.half_open = Counter()
        self.seed = seed
        self.jars: dict[int, dict[str, str]] = {}
        self.feedback_recorded: Counter[int] = Counter()

    def rss_mb(self) -> float:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def request(self, method: str, path: str, body: bytes | None = None, ctype: str | None = None,
                timeout: float = 120.0, cookies: dict[str, str] | None = None) -> tuple[int, bytes, float]:
        """One request on a new connection; ``cookies`` is a client's jar, sent and updated (the
        server gives each browser its own signed user id)."""
        headers = {"Content-Type": ctype} if ctype else {}
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        start = time.monotonic()
        conn = http.client.HTTPConnection(*self.address, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            answer = resp.read()
            if cookies is not None:
                for header in resp.headers.get_all("Set-Cookie") or []:
                    cookies.update({k: m.value for k, m in SimpleCookie(header).items()})
            return resp.status, answer, time.monotonic() - start
        finally:
            conn.close()

    def record(self, kind: str, status: int | str, seconds: float, good: bool, name: str = "") -> None:
        with self.lock:
            self.latency.setdefault(kind, []).append(seconds * 1000)
            if good and not (isinstance(status, int) and 200 <= status < 300):
                self.good_errors[f"{kind}:{status}"] += 1
            elif not good:
                self.hostile[f"{name}:{status}"] += 1
                if not (isinstance(status, int) and 400 <= status < 500):
                    self.hostile_unexpected[f"{name}:{status}"] += 1

    def client(self, number: int, images: list[Path], clips: list[Path]) -> None:
        rng = random.Random(self.seed * 1000 + number)
        jar: dict[str, str] = {}  # this client's browser identity: its feedback shapes its searches
        try:
            self.request("GET", "/api/health", cookies=jar)  # a server with user cookies sets one here
        except OSError:
            pass
        named = {} if jar else {"user": f"soak-{number}"}  # a server without them takes a named user
        self.jars[number] = jar
        kinds, weights = list(KIND_WEIGHTS), list(KIND_WEIGHTS.values())
        while not self.stop.is_set():
            kind = rng.choices(kinds, weights)[0]
            fields = {"k": str(rng.choice([3, 5, 10]))}
            if kind == "text":
                body, ctype = json.dumps({"text": rng.choice(PHRASES), **fields, "k": int(fields["k"])}).encode(), \
                    "application/json"
                path = "/api/search"
            elif kind in ("image", "audio"):
                src = rng.choice(images if kind == "image" else clips)
                body, ctype = multipart(fields, {kind: (src.name, src.read_bytes())})
                path = "/api/search"
            else:
                with self.lock:
                    item = rng.choice(self.item_ids) if self.item_ids else None
                if item is None:
                    continue
                event = rng.choice(["like", "dislike", "click"])
                body, ctype = json.dumps({**named, "item": item, "event": event}).encode(), "application/json"
                path = "/api/feedback"
            try:
                status, answer, seconds = self.request("POST", path, body, ctype, cookies=jar)
            except OSError as exc:
                self.record(kind, type(exc).__name__, 0.0, good=True)
                continue
            self.record(kind, status, seconds, good=True)
            if status == 201:
                with self.lock:
                    self.feedback_recorded[number] += 1
            if status == 200 and path == "/api/search":
                ids = [hit["id"] for hit in json.loads(answer)["results"]]
                with self.lock:
                    self.item_ids = (self.item_ids + ids)[-500:]

    def feedback_stored(self) -> dict[str, int]:
        """Every like, dislike and click the server said it recorded, looked up again in each
        client's own history: nothing accepted may be missing."""
        recorded = stored = 0
        for number, jar in self.jars.items():
            me = json.loads(self.request("GET", "/api/me", cookies=jar)[1])["user"]
            status, body, _ = self.request("GET", f"/api/users/{me}/feedback", cookies=jar)
            recorded += self.feedback_recorded[number]
            stored += len(json.loads(body)["events"]) if status == 200 else 0
        return {"recorded": recorded, "stored": stored, "lost": recorded - stored}

    def hostile_client(self, cases: list[tuple[str, str, bytes, str]], rate: float) -> None:
        rng = random.Random(self.seed)
        while not self.stop.wait(1.0 / rate):
            name, path, body, ctype = rng.choice(cases)
            try:
                status, _, seconds = self.request("POST", path, body, ctype)
            except OSError as exc:
                status, seconds = type(exc).__name__, 0.0
            self.record("hostile", status, seconds, good=False, name=name)
            with self.lock:
                self.hostile_latency.setdefault(name, []).append(seconds * 1000)

    def prober(self) -> None:
        while not self.stop.wait(0.5):
            try:
                status, _, seconds = self.request("GET", "/api/health", timeout=30)
            except OSError as exc:
                status, seconds = type(exc).__name__, 30.0
            self.record("health", status, seconds, good=True)

    def sampler(self, slices: float) -> None:
        next_mark = time.monotonic() + slices
        while not self.stop.wait(0.1):
            rss = self.rss_mb()
            self.rss_peak = max(self.rss_peak, rss)
            if time.monotonic() >= next_mark:
                self.timeline.append(round(rss))
                next_mark += slices

    def half_open_pool(self, count: int) -> None:
        """Keep ``count`` connections that sent a request line and nothing else; replace the
        ones the server closes (its idle timeout)."""
        socks: list[socket.socket] = []
        try:
            while not self.stop.is_set():
                alive = []
                for sock in socks:
                    try:
                        gone = sock.recv(1, socket.MSG_PEEK) == b""
                    except BlockingIOError:
                        gone = False
                    except OSError:
                        gone = True
                    if gone:
                        sock.close()
                        self.half_open["closed_by_server"] += 1
                    else:
                        alive.append(sock)
                socks = alive
                while len(socks) < count:
                    sock = socket.create_connection(self.address, timeout=10)
                    sock.sendall(b"POST /api/search HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                    sock.setblocking(False)  # checked without waiting
                    socks.append(sock)
                    self.half_open["opened"] += 1
                self.stop.wait(0.5)
        finally:
            for sock in socks:
                sock.close()


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    arr = np.asarray(values)
    return {"n": len(values), "p50": round(float(np.percentile(arr, 50)), 1),
            "p99": round(float(np.percentile(arr, 99)), 1), "max": round(float(arr.max()), 1)}


def start_server(collection: Path, config: Path, log: Path) -> tuple[subprocess.Popen, tuple[str, int]]:
    """The server on a free loopback port. Its log goes to a file: a pipe nobody reads fills up
    and then blocks the server's loop on its next warning."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CROSSMODAL_CONFIG": str(config)}
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "crossmodal", "serve", "--collection", str(collection),
                                 "--host", "127.0.0.1", "--port", "0", "-q"], stdout=subprocess.PIPE,
                                stderr=err, text=True, env=env)
    line = proc.stdout.readline()
    found = re.search(r"http://([\d.]+):(\d+)/", line)
    if not found:
        proc.kill()
        raise SystemExit(f"the server did not start: {line}{log.read_text()}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # drained, whatever it prints
    return proc, (found.group(1), int(found.group(2)))


def stop_server(proc: subprocess.Popen, log: Path) -> bool:
    """SIGINT, then at most 30 s to exit 0 saying it stopped."""
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False
    return code == 0 and "stopped" in log.read_text()


def log_summary(log: Path) -> dict[str, int]:
    """What the server logged: lines, waitress's queue-depth warnings (all threads busy), errors."""
    lines = log.read_text(errors="replace").splitlines()
    return {"lines": len(lines), "queue_depth_warnings": sum("Task queue depth" in x for x in lines),
            "errors": sum("ERROR" in x or "Traceback" in x for x in lines)}


def run(args: argparse.Namespace, work: Path) -> dict:
    collection = args.collection or build_collection(work / "soak")
    config = args.config or work / "crossmodal.toml"
    if not args.config:
        config.write_text("")
    from crossmodal.settings import load_settings

    cases = hostile_files(work, load_settings(config).server.max_upload_mb)
    images = sorted((CORPUS_DIR / "images").glob("*.png"))
    clips = sorted((CORPUS_DIR / "audio").glob("*.wav"))
    log = work / "server.log"
    proc, address = start_server(collection, config, log)
    soak = Soak(address, proc.pid, args.seed)
    try:
        for kind in ("text", "image", "audio"):  # warm: the model and each tower are loaded
            body, ctype = (json.dumps({"text": "seven"}).encode(), "application/json") if kind == "text" else \
                multipart({}, {kind: ("warm", (images if kind == "image" else clips)[0].read_bytes())})
            assert soak.request("POST", "/api/search", body, ctype)[0] == 200, f"warm-up {kind} search failed"
        time.sleep(1.0)
        before = soak.rss_mb()
        soak.rss_peak = before
        threads = [threading.Thread(target=soak.client, args=(i, images, clips)) for i in range(args.clients)]
        threads += [threading.Thread(target=soak.hostile_client, args=(cases, args.hostile_rate)),
                    threading.Thread(target=soak.prober),
                    threading.Thread(target=soak.sampler, args=(args.seconds / 12,))]
        if args.half_open:
            threads.append(threading.Thread(target=soak.half_open_pool, args=(args.half_open,)))
        for thread in threads:
            thread.start()
        time.sleep(args.seconds)
        soak.stop.set()
        for thread in threads:
            thread.join()
        time.sleep(3.0)  # let the server settle (and give back what it freed)
        after = soak.rss_mb()
        feedback = soak.feedback_stored()
        try:
            stayed_up = proc.poll() is None and soak.request("GET", "/api/health", timeout=30)[0] == 200
        except OSError:
            stayed_up = False
    finally:
        stopped = stop_server(proc, log) if proc.poll() is None else False
    good = sum(len(v) for k, v in soak.latency.items() if k != "hostile")
    hostile = len(soak.latency.get("hostile", []))
    result = {
        "command": " ".join(["python", "scripts/soak_server.py", *sys.argv[1:]]),
        "clients": args.clients, "seconds": args.seconds,
        "requests": {"total": good + hostile, "good": good, "hostile": hostile,
                     "by_kind": {k: len(v) for k, v in sorted(soak.latency.items())}},
        "errors_on_good_requests": dict(soak.good_errors),
        "hostile_by_status": dict(sorted(soak.hostile.items())),
        "hostile_unexpected": dict(soak.hostile_unexpected),
        "half_open": {"held": args.half_open, **soak.half_open},
        "latency_ms": {k: percentiles(v) for k, v in sorted(soak.latency.items())},
        "hostile_latency_ms": {k: percentiles(v) for k, v in sorted(soak.hostile_latency.items())},
        "rss_mb": {"before": round(before), "peak": round(soak.rss_peak), "after": round(after),
                   "timeline": soak.timeline},
        "server_log": log_summary(log),
        "feedback": feedback, "server_stayed_up": stayed_up, "stopped_cleanly": stopped,
    }
    result["ok"] = (not soak.good_errors and not soak.hostile_unexpected and stayed_up and stopped
                    and feedback["lost"] == 0)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", type=Path, default=None,
                        help="collection folder to serve (default: index the demo corpus into a temporary one)")
    parser.add_argument("--clients", type=int, default=16, help="good client threads (default: 16)")
    parser.add_argument("--seconds", type=float, default=120.0, help="how long the load lasts (default: 120)")
    parser.add_argument("--hostile-rate", type=float, default=2.0,
                        help="hostile requests a second at most; one at a time, 1/RATE s apart (default: 2)")
    parser.add_argument("--half-open", type=int, default=50,
                        help="connections kept open with only a request line sent (default: 50)")
    parser.add_argument("--config", type=Path, default=None, help="settings file for the server (default: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="crossmodal-soak-") as tmp:
        result = run(args, Path(tmp))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
