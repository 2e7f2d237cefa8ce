"""An ordered map over worker processes that survives a worker being killed by what it reads.

Indexing hands chunks of files to forked worker processes and takes the results back in input
order, with a bounded number of chunks in flight so memory stays flat on any collection size.
A native decoder that crashes on a hostile file takes its whole process down; the chunk it was
in is then redone one file per process, so only the culprit is lost.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def fork_context() -> multiprocessing.context.BaseContext | None:
    """Fork where the platform has it: a forked worker starts in milliseconds and shares the
    parent's loaded model, as torch's own DataLoader workers do. None elsewhere."""
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return None


def _init_worker(parent_pid: int, setup: Callable[..., None] | None, setup_args: tuple) -> None:
    """Tie a worker's life to its parent's: a killed indexer must not leave workers behind
    holding its files (the collection's writer lock among them). Ctrl-C is the parent's."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(0)
    if setup is not None:
        setup(*setup_args)


def batched(stream: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for x in stream:
        batch.append(x)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class OrderedProcessMap:
    """``fn`` over chunks of items in ``workers`` forked processes, results in input order.

    ``setup(*setup_args)`` runs once in each worker; with fork its arguments are inherited,
    never pickled, so a loaded model can be one of them. ``on_crash(item)`` gives the result
    for an item whose process died while working on it alone."""

    def __init__(self, fn: Callable[[list[T]], Sequence[R]], workers: int, on_crash: Callable[[T], R],
                 setup: Callable[..., None] | None = None, setup_args: tuple = (), ahead: int = 2) -> None:
        context = fork_context()
        if context is None:
            raise RuntimeError("worker processes need fork")
        self.context = context
        self.fn, self.workers, self.on_crash, self.ahead = fn, workers, on_crash, ahead
        self.init_args: tuple[Any, ...] = (os.getpid(), setup, setup_args)

    def _pool(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=workers, mp_context=self.context, initializer=_init_worker,
                                   initargs=self.init_args)

    def run(self, items: Iterable[T], chunk: int) -> Iterator[Sequence[R]]:
        """Each chunk's results, in order; at most ``ahead`` chunks per worker in flight."""
        parts = batched(items, chunk)
        pool = self._pool(self.workers)
        pending: deque[tuple[list[T], Future]] = deque()
        try:
            while True:
                while len(pending) < self.ahead * self.workers and (part := next(parts, None)) is not None:
                    pending.append((part, pool.submit(self.fn, part)))
                if not pending:
                    return
                part, future = pending.popleft()
                try:
                    results = future.result()
                except BrokenProcessPool:
                    pool.shutdown(cancel_futures=True)
                    results = self._isolated(part)
                    pool = self._pool(self.workers)
                    pending = deque((p, pool.submit(self.fn, p)) for p, _ in pending)
                yield results
        finally:
            pool.shutdown(cancel_futures=True)

    def _isolated(self, part: list[T]) -> list[R]:
        """Redo a chunk whose worker died, one item per process."""
        out: list[R] = []
        for item in part:
            with self._pool(1) as solo:
                try:
                    out.extend(solo.submit(self.fn, [item]).result())
                except BrokenProcessPool:
                    out.append(self.on_crash(item))
        return out
