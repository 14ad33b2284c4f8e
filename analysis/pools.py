"""Process pools that do not outlive an interruption: on any exception in the caller (a
signal turned into one, an error) the workers are terminated instead of finishing their
tasks after the pipeline has stopped."""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor


@contextlib.contextmanager
def process_pool(workers: int, start_method: str, **kwargs) -> Iterator[ProcessPoolExecutor]:
    """A ProcessPoolExecutor with ``workers`` processes started by ``start_method``."""
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(start_method),
                               **kwargs)
    try:
        yield pool
    except BaseException:
        for process in list(getattr(pool, "_processes", {}).values()):  # no public API (3.11)
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
