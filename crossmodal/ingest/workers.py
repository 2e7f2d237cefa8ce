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


_ITEMS: Sequence = ()


def _init_worker(parent_pid: int, items: Sequence, setup: Callable[..., None] | None, setup_args: tuple) -> None:
    """Tie a worker's life to its parent's: a killed indexer must not leave workers behind
    holding its files (the collection's writer lock among them). Ctrl-C is the parent's."""
    global _ITEMS
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(0)
    _ITEMS = items
    _keep_freed_memory()
    if setup is not None:
        setup(*setup_args)


def _keep_freed_memory(mmap_threshold: int = 64 << 20, trim_threshold: int = 256 << 20) -> None:
    """Let glibc's malloc keep what a batch freed for the next batch instead of unmapping it.

    A model's activations are megabytes each; by default each one is a fresh mapping that is
    returned on free, so every batch pays page faults to touch new memory again (a third of a
    worker's system time). Elsewhere than Linux with glibc this does nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, mmap_threshold)
    mallopt(m_trim_threshold, trim_threshold)


def _call_on_range(fn: Callable[[Sequence[T]], Sequence[R]], start: int, stop: int) -> Sequence[R]:
    return fn(_ITEMS[start:stop])


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
    """``fn`` over consecutive chunks of ``items`` in ``workers`` forked processes, results in
    input order.

    The items, like ``setup(*setup_args)`` (run once in each worker), are inherited through
    fork, never pickled: a task is only a (start, stop) range, and a loaded model can be a
    setup argument. Only the results travel back. ``on_crash(item)`` gives the result for an
    item whose process died while working on it alone."""

    def __init__(self, fn: Callable[[Sequence[T]], Sequence[R]], items: Sequence[T], workers: int,
                 on_crash: Callable[[T], R], setup: Callable[..., None] | None = None, setup_args: tuple = (),
                 ahead: int = 2) -> None:
        context = fork_context()
        if context is None:
            raise RuntimeError("worker processes need fork")
        self.context = context
        self.fn, self.items, self.workers, self.on_crash, self.ahead = fn, items, workers, on_crash, ahead
        self.init_args: tuple[Any, ...] = (os.getpid(), items, setup, setup_args)

    def _pool(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=workers, mp_context=self.context, initializer=_init_worker,
                                   initargs=self.init_args)

    def run(self, chunk: int) -> Iterator[Sequence[R]]:
        """Each chunk's results, in order; at most ``ahead`` chunks per worker in flight."""
        ranges = ((start, min(start + chunk, len(self.items))) for start in range(0, len(self.items), chunk))
        pool = self._pool(self.workers)
        pending: deque[tuple[tuple[int, int], Future | None]] = deque()
        finished = False
        try:
            while True:
                while len(pending) < self.ahead * self.workers and (span := next(ranges, None)) is not None:
                    pending.append((span, self._submit(pool, span)))
                if not pending:
                    finished = True
                    return
                span, future = pending.popleft()
                try:
                    if future is None:
                        raise BrokenProcessPool("the pool broke before this chunk was handed over")
                    results = future.result()
                except BrokenProcessPool:
                    pool.shutdown(cancel_futures=True)
                    results = self._isolated(*span)
                    pool = self._pool(self.workers)
                    pending = deque((s, self._submit(pool, s)) for s, _ in pending)
                yield results
        finally:
            # Done: the idle workers exit while the caller goes on (waiting for them took 20 ms
            # a run). Stopped early: wait, so none is left working on files the caller owns.
            pool.shutdown(wait=not finished, cancel_futures=True)

    def _submit(self, pool: ProcessPoolExecutor, span: tuple[int, int]) -> Future | None:
        """The chunk's future, or None when a worker died since the last look (while the
        caller had the previous results) and the pool takes nothing more: the chunk is then
        redone like one that was running when its worker died."""
        try:
            return pool.submit(_call_on_range, self.fn, *span)
        except BrokenProcessPool:
            return None

    def _isolated(self, start: int, stop: int) -> list[R]:
        """Redo a chunk whose worker died, one item per process."""
        out: list[R] = []
        for i in range(start, stop):
            with self._pool(1) as solo:
                try:
                    out.extend(solo.submit(_call_on_range, self.fn, i, i + 1).result())
                except BrokenProcessPool:
                    out.append(self.on_crash(self.items[i]))
        return out
