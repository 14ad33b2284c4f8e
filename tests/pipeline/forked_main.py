"""Entry points for tests/pipeline/test_jobs.py to run as forked commands."""

import logging
import os
import sys


def echo() -> None:
    """Print what a fresh interpreter would see: arguments, one variable, the directory, the
    logging level; log one INFO line through basicConfig."""
    print("argv", sys.argv[1:], "var", os.environ.get("JOBS_TEST"), "cwd", os.getcwd())
    logging.basicConfig(level=logging.INFO, stream=sys.stdout)
    logging.getLogger("forked").info("logged")
    print("error line", file=sys.stderr)


def interrupted() -> None:
    raise KeyboardInterrupt


def exits() -> None:
    sys.exit(3)


def fails() -> None:
    raise ValueError("broken on purpose")
