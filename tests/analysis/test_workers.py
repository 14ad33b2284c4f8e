"""analysis.workers: an interruption in the caller terminates the pool's workers, and a killed
caller's workers die with it."""

import subprocess
import sys
import time

import pytest
from conftest import REPO, assert_gone_within

from analysis.workers import process_pool


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


PARENT = """
import sys, time
from analysis.workers import process_pool
with process_pool(2, sys.argv[1]) as pool:
    for _ in range(2):
        pool.submit(time.sleep, 600)
    print(" ".join(str(p) for p in pool._processes), flush=True)
    time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_workers_die_with_a_killed_parent(start_method):
    """SIGKILL leaves the parent no chance to clean up: the kernel kills the workers."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT, start_method], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    workers = [int(p) for p in parent.stdout.readline().split()]
    assert len(workers) == 2
    parent.kill()
    parent.wait()
    assert_gone_within(workers, 30, "outlived their killed parent")
