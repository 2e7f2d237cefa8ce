"""What one request may cost, against a real server (`crossmodal serve` in a subprocess) and real
hostile files: a FLAC whose header promises a minute of 655,350 Hz x 8 channels of silence
(1.2 GB as float32, 340 KB on disk), a PNG promising 40 megapixels of RGB (117 KB), and 300
connections that send a request line and nothing more. Also: the same budgets at indexing, the
connection limit fitted to the file-descriptor limit, and freed heap given back to the OS."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from support.media import corpus_files, index_paths

from crossmodal.core.memory import can_trim, trim_heap, trim_when_freed, trims_done
from crossmodal.core.query_inputs import query_limits
from crossmodal.ingest.decode import DecodeLimits
from crossmodal.settings import SearchSettings, Settings

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads memory use from /proc")

MB = 1 << 20


def silent_flac(path: Path, seconds: float, rate: int = 655_350, channels: int = 8) -> Path:
    """Silence at FLAC's highest rate in eight channels, written in blocks."""
    with sf.SoundFile(path, "w", samplerate=rate, channels=channels, format="FLAC", subtype="PCM_16") as out:
        block = np.zeros((1 << 20, channels), dtype=np.int16)
        left = int(seconds * rate)
        while left:
            n = min(left, len(block))
            out.write(block[:n])
            left -= n
    return path


def black_png(path: Path, width: int, height: int) -> Path:
    """An RGB PNG of zeros, compressed as it is made (never whole in memory)."""
    packer = zlib.compressobj(6)
    row_block = bytes((3 * width + 1) * 64)
    parts, rows = [], height
    while rows:
        n = min(rows, 64)
        parts.append(packer.compress(row_block[:(3 * width + 1) * n]))
        rows -= n
    parts.append(packer.flush())

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) +
                     chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    files = {"flac": silent_flac(folder / "silence.flac", 60.0), "png": black_png(folder / "big.png", 8000, 5000)}
    assert files["flac"].stat().st_size < 400_000 and files["png"].stat().st_size < 200_000
    return files


@pytest.fixture(scope="module")
def collection(tmp_path_factory, starter) -> Path:
    root = tmp_path_factory.mktemp("limits")
    media = root / "media"
    media.mkdir()
    for src in corpus_files("image", "3", 2) + corpus_files("audio", "5", 2):
        shutil.copy(src, media / src.name)
    index_paths(root / "coll", [media], Settings(), aligner=starter, progress=False)
    return root / "coll"


class Server:
    """`crossmodal serve` on a free loopback port, with its memory read from /proc. Its log goes
    to a file: a full pipe would block the server's loop on its next warning."""

    def __init__(self, collection: Path, config: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "CROSSMODAL_CONFIG": str(config)}
        self.log = config.with_name("server.log")
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "crossmodal", "serve", "--collection",
                                          str(collection), "--port", "0", "-q"], stdout=subprocess.PIPE,
                                         stderr=err, text=True, env=env)
        line = self.proc.stdout.readline()
        found = re.search(r"http://([\d.]+):(\d+)/", line)
        if not found:
            self.proc.kill()
            self.proc.wait()
            self.proc.stdout.close()
            raise AssertionError(f"server did not start: {line}{self.log.read_text()}")
        self.url, self.address = found.group(0), (found.group(1), int(found.group(2)))

    def rss(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def upload(self, field: str, path: Path) -> tuple[int, dict, float]:
        """Search with one file; the status, the JSON answer and the seconds it took."""
        boundary = uuid.uuid4().hex
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{path.name}"\r\n\r\n'
                ).encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        req = urllib.request.Request(self.url + "api/search", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        start = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                return resp.status, json.loads(resp.read()), time.monotonic() - start
        except urllib.error.HTTPError as err:
            with err:
                return err.code, json.loads(err.read()), time.monotonic() - start

    def get(self, path: str, timeout: float) -> tuple[int, float]:
        start = time.monotonic()
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            resp.read()
            return resp.status, time.monotonic() - start

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        return code, self.log.read_text()


class PeakRss:
    """The server's largest RSS over a block, sampled every 5 ms from another thread."""

    def __init__(self, server: Server) -> None:
        self.server, self.before, self.peak = server, server.rss(), server.rss()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, self.server.rss())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self.server.rss())

    @property
    def growth(self) -> float:
        return self.peak - self.before


def _start(collection: Path, folder: Path, config: str = "") -> Server:
    (folder / "crossmodal.toml").write_text(config)
    return Server(collection, folder / "crossmodal.toml")


@pytest.fixture(scope="module")
def server(collection, tmp_path_factory):
    srv = _start(collection, tmp_path_factory.mktemp("server"))
    try:
        assert srv.get("api/health", timeout=30)[0] == 200
        assert srv.upload("image", corpus_files("image", "3", 1)[0])[0] == 200  # warm: the model is loaded
        assert srv.upload("audio", corpus_files("audio", "5", 1)[0])[0] == 200
        yield srv
    finally:
        code, err = srv.stop()
    assert code == 0 and "stopped" in err


def test_query_budgets_come_from_the_search_settings():
    assert query_limits(SearchSettings()) == DecodeLimits(max_image_pixels=40_000_000, max_audio_seconds=60.0,
                                                          max_image_bytes=64 * MB, max_audio_bytes=64 * MB)


@pytest.mark.slow
@pytest.mark.parametrize("field,kind,named", ids=["flac", "png"], argvalues=[
    ("audio", "flac", "1,200 MiB (655,350 Hz x 8 channels x 60.0 s as float32), over the 64 MiB limit on decoded "
                      "audio"),
    ("image", "png", "8000x5000 RGB, 153 MiB decoded, over the 64 MiB limit on a decoded image"),
])
def test_a_small_file_promising_a_huge_decode_is_refused_at_once(server, hostile, field, kind, named):
    with PeakRss(server) as rss:
        status, body, seconds = server.upload(field, hostile[kind])
    assert status == 422 and named in body["error"] and body["error"].startswith(f"{field}: cannot decode")
    assert seconds < 2.0
    assert rss.growth < 100 * MB, f"RSS grew {rss.growth / MB:.0f} MB"


@pytest.mark.slow
def test_parallel_hostile_uploads_do_not_multiply_memory(server, hostile):
    jobs = [("audio", hostile["flac"]), ("image", hostile["png"])] * 4
    with PeakRss(server) as rss, ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(lambda job: server.upload(*job), jobs))
    assert [a[0] for a in answers] == [422] * len(jobs)
    assert all("limit" in a[1]["error"] for a in answers)
    assert rss.growth < 100 * MB, f"RSS grew {rss.growth / MB:.0f} MB"
    assert server.upload("image", corpus_files("image", "3", 1)[0])[0] == 200


def _half_open(address: tuple[str, int], count: int) -> list[socket.socket]:
    """Connections that send a request line and then nothing."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(address, timeout=10)
        sock.sendall(b"POST /api/search HTTP/1.1\r\n")
        socks.append(sock)
    return socks


@pytest.mark.slow
def test_300_half_open_connections_do_not_starve_health(server):
    socks = _half_open(server.address, 300)
    try:
        time.sleep(0.5)  # the server has seen them all
        status, seconds = server.get("api/health", timeout=5)
        assert status == 200 and seconds < 2.0
        assert server.upload("audio", corpus_files("audio", "5", 1)[0])[0] == 200
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.slow
def test_idle_half_open_connections_are_closed_after_the_channel_timeout(collection, tmp_path):
    srv = _start(collection, tmp_path, "[server]\nchannel_timeout = 2\ncleanup_interval = 1\n")
    try:
        socks = _half_open(srv.address, 20)
        start = time.monotonic()
        try:
            for sock in socks:
                try:
                    assert sock.recv(1) == b""  # closed by the server, not by our 10 s timeout
                except ConnectionResetError:
                    pass
        finally:
            for sock in socks:
                sock.close()
        assert time.monotonic() - start < 6
    finally:
        code, _ = srv.stop()
    assert code == 0


_FIT = """
import logging, resource, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
from crossmodal.server.run import fit_connection_limit
print(fit_connection_limit(1000), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


@pytest.mark.slow
@pytest.mark.parametrize("soft,hard,limit,raised", [(200, 200, 68, 200), (200, 4096, 1000, 2064)])
def test_the_connection_limit_fits_the_file_descriptor_limit(soft, hard, limit, raised):
    import resource

    allowed = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if allowed != resource.RLIM_INFINITY and allowed < hard:
        pytest.skip(f"this process may not open {hard} files")
    out = subprocess.run([sys.executable, "-c", _FIT], capture_output=True, text=True, check=True,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))).stdout
    assert out.splitlines()[-1] == f"{limit} {raised}"
    assert ("connection_limit 1000 needs 2064 open files" in out) == (limit < 1000)


@pytest.mark.slow
def test_indexing_skips_a_file_over_its_budget_and_says_why(tmp_path, hostile, starter):
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(hostile["flac"], media / "silence.flac")
    for src in corpus_files("image", "3", 1) + corpus_files("audio", "5", 1):
        shutil.copy(src, media / src.name)
    start = time.monotonic()
    report = index_paths(tmp_path / "coll", [media], Settings(), aligner=starter, progress=False)
    assert report.added == 2
    [skip] = report.skipped
    assert Path(skip.source).name == "silence.flac"
    assert skip.reason.startswith("audio would decode to 1,200 MiB")
    assert "over the 1,024 MiB limit on decoded audio" in skip.reason
    assert time.monotonic() - start < 30


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _fragment_heap() -> list[np.ndarray]:
    """Free 270 MB of 1 MB blocks on a thread's heap, keeping every 30th block alive: without a
    trim glibc keeps all of it, since live blocks sit between the free ones."""
    out: list[list[np.ndarray]] = []

    def work() -> None:
        np.ones(16 * MB, np.uint8)  # freeing a 16 MB mapping raises glibc's mmap threshold above 1 MB
        blocks = [np.ones(MB, np.uint8) for _ in range(300)]
        out.append(blocks[::30])

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return out[0]


@pytest.mark.skipif(not can_trim(), reason="malloc_trim is glibc's")
def test_freed_heap_goes_back_to_the_os():
    kept = _fragment_heap()
    before = _rss()
    assert trim_heap()
    assert before - _rss() > 150 * MB
    assert len(kept) == 10


@pytest.mark.skipif(not can_trim(), reason="malloc_trim is glibc's")
def test_large_decoded_media_asks_for_a_trim_when_freed():
    done = trims_done()
    small, large = np.zeros(1000, np.float32), np.zeros(4 * MB, np.float32)
    trim_when_freed(small, small.nbytes)
    trim_when_freed(large, large.nbytes)
    del small
    time.sleep(0.3)
    assert trims_done() == done
    del large
    deadline = time.monotonic() + 3
    while trims_done() == done and time.monotonic() < deadline:
        time.sleep(0.02)
    assert trims_done() == done + 1
