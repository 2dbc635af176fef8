"""Worker processes that never outlive their work, their parent, or a Ctrl-C.

Every process pool of the project is a :class:`WorkerPool`: a ``ProcessPoolExecutor`` whose
workers are spawned, not forked, so none inherits a held file lock's descriptor, or OpenCV's
thread pool in the broken state that can hang a forked child at its first OpenCV call. They
ignore SIGINT (the parent alone handles Ctrl-C, so no worker prints a traceback). Leaving the
``with`` block because of an exception (in a worker or in the parent, Ctrl-C, ``SystemExit``)
kills them before the executor shuts down, so no running task is waited for. On Linux the
kernel also kills them when their parent dies without cleaning up (``kill -9``, or SIGTERM's
default action). A worker that dies mid-task (a crash in native code, the out-of-memory
killer) raises :class:`ChildProcessError` in the parent: the executor notices the death,
where ``multiprocessing.Pool`` can wait forever for a lock the dead worker held.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Self, TypeVar

T = TypeVar("T")
R = TypeVar("R")

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class WorkerPool:
    """Up to ``processes`` fresh worker processes, to be used as a context manager.

    Functions and items travel pickled: pass module-level functions (or ``functools.partial``
    of them). Create and use it in one thread: Linux's parent-death signal fires when the
    thread that started a worker ends.

    Example::

        with WorkerPool(4) as pool:
            roots = list(pool.imap(math.sqrt, range(100)))
    """

    def __init__(self, processes: int) -> None:
        self._executor = ProcessPoolExecutor(
            processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_initialize_worker,
            initargs=(os.getpid(),),
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None:
            # The executor's own shutdown would wait for running tasks. Python 3.14 has
            # ProcessPoolExecutor.kill_workers(); before it, its processes are only private.
            for process in list(self._executor._processes.values()):
                process.kill()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def imap(self, function: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """``function`` of each item, in the items' order, computed in the workers.

        Raises:
            ChildProcessError: A worker died.
            Exception: Whatever ``function`` raised in a worker (the parent gets it, message
                and all).
        """
        try:
            yield from self._executor.map(function, items)
        except BrokenProcessPool as error:
            raise ChildProcessError(
                "A worker process died (killed by a signal, e.g. by the out-of-memory killer, "
                f"or crashed in native code): {error}"
            ) from error


def _initialize_worker(parent: int) -> None:
    """Leaves Ctrl-C to the parent and, on Linux, has the kernel kill this worker with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform != "linux":
        return  # no parent-death signal elsewhere: a worker outlives a parent killed by -9
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # fails only for a bad signal
    if os.getppid() != parent:  # the parent died before prctl, so no signal will come
        os._exit(1)
