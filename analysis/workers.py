"""Worker processes that do not outlive the pipeline: on any exception in the caller (a
signal turned into one, an error) the workers are terminated instead of finishing their
tasks after the pipeline has stopped, and on Linux the kernel kills them when the process
that started them dies, however it dies (SIGKILL included)."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(parent: int | None = None) -> None:
    """Have Linux send this process SIGKILL when the thread that started it exits (a no-op
    elsewhere); exit at once if ``parent`` (its pid) has already gone."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def _worker_init(parent: int, initializer: Callable | None, initargs: tuple) -> None:
    die_with_parent(parent)
    if initializer is not None:
        initializer(*initargs)


@contextlib.contextmanager
def process_pool(workers: int, start_method: str, **kwargs) -> Iterator[ProcessPoolExecutor]:
    """A ProcessPoolExecutor with ``workers`` processes started by ``start_method``, each
    killed with its parent (``initializer``/``initargs`` as ProcessPoolExecutor's)."""
    init = (os.getpid(), kwargs.pop("initializer", None), kwargs.pop("initargs", ()))
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(start_method),
                               initializer=_worker_init, initargs=init, **kwargs)
    try:
        yield pool
    except BaseException:
        for process in list(getattr(pool, "_processes", {}).values()):  # no public API (3.11)
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
