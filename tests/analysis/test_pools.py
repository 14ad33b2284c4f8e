"""analysis.pools: an interruption in the caller terminates the pool's workers."""

import time

import pytest

from analysis.pools import process_pool


def test_workers_do_not_outlive_an_interruption():
    with pytest.raises(KeyboardInterrupt):
        with process_pool(1, "spawn") as pool:
            pool.submit(time.sleep, 600)
            processes = list(pool._processes.values())
            raise KeyboardInterrupt
    for process in processes:
        # terminated at once; the task alone would take 600 s. The executor's own thread may
        # reap the worker first, and then is_alive() reads True until that thread records the
        # exit code, so wait for the code itself.
        deadline = time.monotonic() + 60
        while process.exitcode is None and time.monotonic() < deadline:
            process.join(0.1)
        assert process.exitcode is not None


def test_results_come_back_when_nothing_goes_wrong():
    with process_pool(2, "spawn") as pool:
        assert list(pool.map(abs, [-1, -2, 3])) == [1, 2, 3]
