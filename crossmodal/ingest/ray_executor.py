"""Decode and embed on a Ray cluster's workers; the indexing process stays the one writer.

``[ingest] executor = "ray"`` (``crossmodal index --executor ray [--cluster ADDRESS]``) replaces
the local process pool of `embed.py` with Ray actors, one CPU each: the model is put once in
Ray's object store and every actor takes it from there (no model files needed on the workers),
batches of candidates go out round-robin with two per actor in flight, and results come back in
input order to the indexing process, which writes the catalog and the indexes as it always does.

What the workers need besides Ray: the files, at the same paths (a shared mount), and this
package with the model's code (the same environment). Which contents are stored already is
asked of one small actor placed on the indexing process's own node, where the catalog is.

A worker killed by what it reads (a native decoder crashing on a hostile file) is restarted by
Ray; the batch it was on is redone one file per call, so only the culprit is skipped, as in the
local pool. Without ``--cluster`` a local Ray is started for the run with one CPU per worker.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import deque
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from crossmodal.errors import ConfigError
from crossmodal.ingest import embed
from crossmodal.ingest.discover import Candidate
from crossmodal.ingest.embed import KnownHashes, Outcome
from crossmodal.ingest.workers import batched
from crossmodal.items import NewItem, Skip
from crossmodal.settings import IngestSettings

if TYPE_CHECKING:
    from crossmodal.aligner.model import Aligner

LOG = logging.getLogger(__name__)
EXECUTORS = ("local", "ray")
AHEAD = 2
"""Batches queued on each actor, so none waits for the indexing process between batches."""
Result = tuple[str | None, NewItem | Skip | None]


def check_executor(name: str) -> str:
    if name not in EXECUTORS:
        raise ConfigError(f"[ingest] executor must be one of {', '.join(EXECUTORS)}, not {name!r}")
    return name


def embed_stream(cands: Sequence[Candidate], aligner: Aligner, settings: IngestSettings,
                 weights: dict[str, float], known: KnownHashes) -> Iterator[list[Outcome]]:
    """`embed.embed_stream` (the local process pool), or Ray workers where ``settings.executor``
    says so: outcomes batch by batch, in input order, either way."""
    if check_executor(settings.executor) == "local":
        yield from embed.embed_stream(cands, aligner, settings, weights, known)
        return
    if not cands:
        return
    with RayRun(settings) as run:
        yield from run.stream(cands, aligner, weights, known)


def _import_ray() -> Any:
    """Ray, imported now; importing it applies a logging config that disables every logger that
    exists already (crossmodal's among them), so their state is put back."""
    loggers = [lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    before = [lg.disabled for lg in loggers]
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'crossmodal[ray]' (or pip install ray) in this "
                          "environment and on every worker node") from None
    finally:
        for logger, disabled in zip(loggers, before):
            logger.disabled = disabled
    return ray


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail at once on a head that does not answer (Ray itself retries for minutes)."""
    host, _, port = address.rpartition("://")[2].rpartition(":")
    if not port.isdigit():
        return  # "auto" and the like: Ray resolves them
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(f"cannot start Ray workers on {address}: nothing answers there ({exc})") from None


class _Lookup:
    """Answers which content hashes the catalog holds (runs beside the catalog)."""

    def __init__(self, known: KnownHashes) -> None:
        self.known = known

    def ask(self, hashes: list[str]) -> set[str]:
        return set(self.known(hashes))


class _Worker:
    """One Ray actor: the model from the object store, one torch thread, whole batches."""

    def __init__(self, aligner_ref: Any, settings: IngestSettings, weights: dict[str, float], lookup: Any) -> None:
        import ray
        import torch

        torch.set_num_threads(1)
        # A list, so that Ray hands over the reference rather than resolving it into the argument.
        self.aligner = ray.get(aligner_ref[0])
        self.settings, self.weights, self.lookup = settings, weights, lookup
        # Into the worker's log file on its node (Ray's logs folder): which processes did the work.
        print(f"crossmodal Ray worker ready in process {os.getpid()}", flush=True)

    def known(self, hashes: list[str]) -> set[str]:
        import ray

        return ray.get(self.lookup.ask.remote(list(hashes))) if hashes else set()

    def run(self, cands: list[Candidate]) -> list[Result]:
        outcomes = embed.process_batch(cands, self.aligner, self.settings, self.weights, self.known)
        return [(o.content_hash, o.item) for o in outcomes]

    def pid(self) -> int:
        return os.getpid()


class RayRun:
    """A connection to Ray for one indexing run: to ``settings.cluster`` if given, else a local
    Ray started now (and stopped at the end) with ``settings.workers`` CPUs."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.ray = _import_ray()
        self.started_here = False

    def __enter__(self) -> RayRun:
        ray = self.ray
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                       "configure_logging": False}
            if self.settings.cluster:
                _check_reachable(self.settings.cluster)
                options["address"] = self.settings.cluster
            else:
                options["num_cpus"] = self.settings.workers if self.settings.workers > 0 else os.cpu_count() or 1
            try:
                ray.init(**options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = self.settings.cluster or "a local Ray"
                raise ConfigError(f"cannot start Ray workers on {where}: {exc}") from None
            self.started_here = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started_here:
            self.ray.shutdown()

    def workers(self) -> int:
        """Actors to start: ``settings.workers`` when positive, else one per CPU of the cluster."""
        if self.settings.workers > 0:
            return self.settings.workers
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def stream(self, cands: Sequence[Candidate], aligner: Aligner, weights: dict[str, float],
               known: KnownHashes) -> Iterator[list[Outcome]]:
        ray = self.ray
        from ray.exceptions import RayActorError
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        lookup = ray.remote(num_cpus=0)(_Lookup).options(scheduling_strategy=here).remote(known)
        worker_class = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=0)(_Worker)
        model = [ray.put(aligner)]
        actors = [worker_class.remote(model, self.settings, weights, lookup) for _ in range(self.workers())]
        pids = ray.get([actor.pid.remote() for actor in actors])
        LOG.info("decoding and embedding on %d Ray workers (processes %s)", len(actors), ", ".join(map(str, pids)))
        chunks = list(batched(cands, self.settings.batch_size))
        pending: deque[tuple[int, Any]] = deque()
        submitted = 0
        try:
            while True:
                while len(pending) < AHEAD * len(actors) and submitted < len(chunks):
                    actor = submitted % len(actors)
                    pending.append((submitted, actors[actor].run.remote(chunks[submitted])))
                    submitted += 1
                if not pending:
                    return
                index, ref = pending.popleft()
                try:
                    results = ray.get(ref)
                except RayActorError:
                    results = self._isolated(actors[index % len(actors)], chunks[index])
                yield [Outcome(cand, *result) for cand, result in zip(chunks[index], results)]
        finally:
            for actor in actors:
                ray.kill(actor)
            ray.kill(lookup)

    def _isolated(self, actor: Any, chunk: list[Candidate]) -> list[Result]:
        """Redo a batch whose actor died, one candidate per call (Ray restarts the actor)."""
        from ray.exceptions import RayActorError

        out: list[Result] = []
        for cand in chunk:
            try:
                out.extend(self.ray.get(actor.run.remote([cand])))
            except RayActorError:
                out.append((None, Skip(cand.uri, "reading this file crashed the Ray worker process")))
        return out
