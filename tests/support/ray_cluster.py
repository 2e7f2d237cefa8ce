"""A Ray cluster on this machine for tests: one head node (`ray start --head --block`) with a few
CPUs, every port one the OS just handed out, its session files in a short temporary folder, and
stopped (with every process it started) at the end; killed with the test process too."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from support.milvus_server import _die_with_parent, free_port

START_TIMEOUT_S = 120.0


@dataclass
class RayCluster:
    address: str
    proc: subprocess.Popen
    temp_dir: Path
    env: dict[str, str]
    """What a driver's environment needs to join: token authentication, with this cluster's token."""

    def stop(self) -> None:
        """SIGTERM to every process the head started (its workers have process groups of their
        own), then SIGKILL to whatever is left after a few seconds."""
        family = [self.proc.pid, *_descendants(self.proc.pid)]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in family:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and (self.proc.poll() is None or any(map(_alive, family[1:]))):
                time.sleep(0.1)
        self.proc.wait(timeout=20)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for its parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _descendants(root: int) -> list[int]:
    """Every live process below ``root``, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, ppid in parents.items() if ppid in frontier]
        found += children
        frontier = children
    return found


def _ready(address: str, env: dict[str, str]) -> bool:
    code = (f"import ray; ray.init(address={address!r}, log_to_driver=False, configure_logging=False); "
            "print(int(ray.cluster_resources().get('CPU', 0)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    return done.returncode == 0 and done.stdout.strip().isdigit() and int(done.stdout.strip()) > 0


def start_ray(cpus: int) -> RayCluster:
    """A head node with ``cpus`` CPUs on 127.0.0.1; returns once a driver can connect."""
    ray_bin = Path(sys.executable).with_name("ray")
    temp_dir = Path(tempfile.mkdtemp(prefix="cmray", dir="/tmp"))  # Unix socket paths must stay short
    port = free_port()
    low = free_port()
    args = [str(ray_bin), "start", "--head", "--block", "--disable-usage-stats", "--include-dashboard=false",
            "--node-ip-address=127.0.0.1", f"--port={port}", f"--num-cpus={cpus}", f"--temp-dir={temp_dir}",
            "--object-store-memory=300000000", f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}", f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
            f"--dashboard-port={free_port()}",
            f"--min-worker-port={low}", f"--max-worker-port={min(low + 200, 65535)}"]
    token = temp_dir / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    log = open(temp_dir / "ray-start.log", "wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={**os.environ, **env}, start_new_session=True, preexec_fn=_die_with_parent)
    log.close()
    cluster = RayCluster(f"127.0.0.1:{port}", proc, temp_dir, env)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while not _ready(cluster.address, {**os.environ, **env}):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Ray head did not start: {(temp_dir / 'ray-start.log').read_text()[-2000:]}")
            time.sleep(1.0)
    except BaseException:
        cluster.stop()
        raise
    return cluster
