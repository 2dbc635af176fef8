"""Worker processes that never outlive their work, their parent, or a Ctrl-C.

Every process pool of the project is a :class:`WorkerPool`. Its workers are spawned, not
forked, so none inherits a held file lock's descriptor, or OpenCV's thread pool in the broken
state that can hang a forked child at its first OpenCV call. They ignore SIGINT (the parent
alone handles Ctrl-C, so no worker prints a traceback). Leaving the ``with`` block, for any
reason (all done, an exception in a worker or in the parent, Ctrl-C, ``SystemExit``), kills
and reaps them. On Linux the kernel also kills them when their parent dies without cleaning up
(``kill -9``, or SIGTERM's default action). A worker that dies mid-task (a crash in native
code, the out-of-memory killer) raises :class:`ChildProcessError` in the parent rather than
leaving it waiting forever for that task's result. One hole of ``multiprocessing.Pool``
remains: a worker killed while idle may die holding the task queue's lock, and leaving the
block then waits for that lock forever (a parent killed then still takes its workers along).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Self, TypeVar

T = TypeVar("T")
R = TypeVar("R")

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_SECONDS = 0.5  # how often a parent waiting for a result checks that its workers live


class WorkerPool:
    """``processes`` fresh worker processes, to be used as a context manager.

    Functions and items travel pickled: pass module-level functions (or ``functools.partial``
    of them). Create and use it in one thread: Linux's parent-death signal fires when the
    thread that started a worker ends.

    Example::

        with WorkerPool(4) as pool:
            roots = list(track(pool.imap(math.sqrt, range(100)), total=100))
    """

    def __init__(self, processes: int) -> None:
        before = set(multiprocessing.active_children())
        spawn = multiprocessing.get_context("spawn")
        self._pool = spawn.Pool(processes, _initialize_worker, (os.getpid(),))
        self._workers = [p for p in multiprocessing.active_children() if p not in before]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.terminate()
        self._pool.join()

    def imap(self, function: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """``function`` of each item, in the items' order, computed in the workers.

        Raises:
            ChildProcessError: A worker died (the message gives its exit code).
            Exception: Whatever ``function`` raised in a worker (the parent gets it, message
                and all).
        """
        results = self._pool.imap(function, items)  # chunksize 1: an iterator with timeouts
        while True:
            try:
                result = results.next(timeout=POLL_SECONDS)
            except StopIteration:
                return
            except multiprocessing.TimeoutError:
                self._check_workers()
                continue
            yield result

    def _check_workers(self) -> None:
        """Workers only exit when the pool ends: one gone now died, and its task with it."""
        for worker in self._workers:
            if worker.exitcode is not None:
                raise ChildProcessError(
                    f"Worker process {worker.pid} died (exit code {worker.exitcode}: a negative "
                    "code is the signal that killed it, e.g. -9 from the out-of-memory killer)"
                )


def _initialize_worker(parent: int) -> None:
    """Leaves Ctrl-C to the parent and, on Linux, has the kernel kill this worker with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform != "linux":
        return  # no parent-death signal elsewhere: a worker outlives a parent killed by -9
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # fails only for a bad signal
    if os.getppid() != parent:  # the parent died before prctl, so no signal will come
        os._exit(1)
