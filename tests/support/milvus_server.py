"""A real Milvus standalone server for tests: the `milvus` package's embedded binary (Milvus 2.3.5,
embedded etcd, local storage, rocksmq), one process started by a session fixture.

Every port is one the OS just handed out (nothing fixed, so two test runs on one machine do not
collide), the embedded etcd included, whose ports the package leaves at 2379/2380 otherwise.
Milvus 2.3 has no setting for the address it listens on: its gRPC ports accept connections on
every interface, so authentication is switched on and root's password is replaced by a random one
before any test sees the server; the components advertise 127.0.0.1 to each other. The server
dies with the process that started it (PR_SET_PDEATHSIG), so a killed pytest leaves nothing
running.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 5.0
_COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")


def free_port() -> int:
    """A loopback port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the server's process before exec: SIGKILL it when the test process dies."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


@dataclass
class MilvusServerProcess:
    """A running server: its URI, the token that opens it, and its process."""

    uri: str
    token: str
    base: Path
    proc: subprocess.Popen
    health_url: str

    def log_tail(self, chars: int = 3000) -> str:
        path = self.base / "logs" / "milvus-stderr.log"
        return path.read_text(errors="replace")[-chars:] if path.is_file() else ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited in STOP_TIMEOUT_S."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_S)


def _etcd_config(base: Path, client_port: int, peer_port: int) -> Path:
    """The embedded etcd's own config: loopback ports of ours instead of its 2379/2380."""
    client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    path = base / "configs" / "etcd.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"name: default\nlisten-client-urls: {client}\nadvertise-client-urls: {client}\n"
                    f"listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\n"
                    f"initial-cluster: default={peer}\n")
    return path


def _write_config(base: Path) -> tuple[int, int]:
    """milvus.yaml from the package's template with fresh ports; returns (proxy port, metrics port)."""
    from milvus import MilvusServerConfig

    config = MilvusServerConfig(data_dir=str(base))
    ports = {key: free_port() for key in config.configurable_items if key.endswith("_port")}
    config.update(**ports)
    config.set("authorization_enabled", True)
    for component in _COMPONENTS:
        config.set(f"{component}.ip", "127.0.0.1")
    config.resolve()
    etcd = _etcd_config(base, ports["etcd_port"], free_port())
    yaml = base / "configs" / "milvus.yaml"
    text = yaml.read_text()
    assert text.count("\netcd:\n") == 1, "the milvus package's config template changed"
    yaml.write_text(text.replace("\netcd:\n", f"\netcd:\n  config:\n    path: {etcd}\n", 1))
    return ports["proxy_port"], free_port()


def _wait_healthy(proc: subprocess.Popen, url: str, base: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Milvus exited with {proc.returncode} while starting; logs in {base / 'logs'}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if b"OK" in resp.read():
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"Milvus not healthy after {START_TIMEOUT_S:.0f} s; logs in {base / 'logs'}")


def start_milvus(base: Path) -> MilvusServerProcess:
    """Start a server with its data, config and logs under ``base``; returns once it answers."""
    import milvus
    from pymilvus import MilvusClient

    base.mkdir(parents=True, exist_ok=True)
    proxy_port, metrics_port = _write_config(base)
    milvus._initialize_data_files(str(base))  # the binary and its libraries, unpacked into base/bin
    bin_dir = base / "bin"
    env = dict(os.environ, DEPLOY_MODE="STANDALONE", METRICS_PORT=str(metrics_port),
               MILVUS_RUN_DIR=str(base / "run"),
               LD_LIBRARY_PATH=":".join(filter(None, [str(bin_dir), os.environ.get("LD_LIBRARY_PATH")])))
    (base / "logs").mkdir(exist_ok=True)
    with open(base / "logs" / "milvus-stdout.log", "wb") as out, open(base / "logs" / "milvus-stderr.log", "wb") as err:
        proc = subprocess.Popen([str(bin_dir / "milvus"), "run", "standalone"], cwd=base, env=env, stdout=out,
                                stderr=err, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    server = MilvusServerProcess(f"http://127.0.0.1:{proxy_port}", "root:Milvus", base, proc,
                                 f"http://127.0.0.1:{metrics_port}/healthz")
    try:
        _wait_healthy(proc, server.health_url, base)
        password = secrets.token_urlsafe(16)
        client = MilvusClient(uri=server.uri, token=server.token)
        try:
            client.update_password("root", "Milvus", password)
        finally:
            client.close()
        server.token = f"root:{password}"
    except BaseException:
        server.stop()
        raise
    return server
