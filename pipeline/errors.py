"""The errors a user can cause, each told in one line at the entry point, without a traceback:
a bad setting, bad input data, a stage whose input was not run, a refused checkpoint, an invalid
result, a file where a folder is needed, and what Hydra refuses while composing the config
(an override it cannot parse, a config group option or key that does not exist).
``HYDRA_FULL_ERROR=1`` shows the full traceback instead, as Hydra's own errors do.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.errors import (
    CompactHydraException,
    ConfigCompositionException,
    MissingConfigException,
    OverrideParseException,
)

from data_prep.errors import DataError
from pipeline.checkpoints import CheckpointError
from pipeline.config import CONFIG_DIR
from pipeline.runner import MissingInput
from pipeline.runtime import REPO_ROOT
from pipeline.schema import ConfigError, file_in_the_way, known_keys, unknown_key
from pipeline.store import Invalid

# The project's own error types: their messages say what and where.
EXPECTED: tuple[type[Exception], ...] = (ConfigError, DataError, MissingInput, CheckpointError,
                                         Invalid)
# The only folder Hydra makes before the task runs (pipeline.yaml puts it there).
RUN_FOLDER = "the run's folder (hydra.run.dir or hydra.sweep.dir, below artifacts_dir)"
OUR_CODE = tuple(os.path.join(REPO_ROOT, package, "") for package in
                 ("pipeline", "data_prep", "analysis"))


def full_error() -> bool:
    """Whether the user asked for full tracebacks (Hydra's switch)."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def one_line(err: BaseException, folder: str = "the folder") -> str | None:
    """The line that tells ``err``; None when it is not an error a user causes (a bug, whose
    traceback is shown). ``folder`` says what a folder that could not be made is for."""
    if isinstance(err, ConfigError):
        text = str(err)
    elif isinstance(err, DataError):
        text = f"data error: {err}"
    elif isinstance(err, EXPECTED):
        text = f"error: {err}"
    elif isinstance(err, CompactHydraException):
        text = _hydra_line(err)
    elif isinstance(err, OSError) and (blocker := _blocker(err)) is not None:
        text = f"error: cannot make {folder} {err.filename}: {blocker} is a file, not a folder"
    elif isinstance(err, FileNotFoundError) and err.errno is None and _raised_here(err):
        text = f"error: {err}"  # our own message, which names the path
    else:
        return None
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _blocker(err: OSError) -> Path | None:
    """The file in the way when making a folder failed for it (mkdir, makedirs)."""
    if not isinstance(err, NotADirectoryError | FileExistsError) or not err.filename:
        return None
    return file_in_the_way(err.filename)


def _raised_here(err: BaseException) -> bool:
    """Whether ``err`` was raised by the project's code (not a library's, nor the system)."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename.startswith(OUR_CODE)


def _hydra_line(err: CompactHydraException) -> str:
    """What Hydra refused while composing the config, in a line that names the override."""
    if isinstance(err, OverrideParseException):
        return f"config error: cannot parse the override {err.override!r}: {err.message}"
    if isinstance(err, MissingConfigException) and err.missing_cfg_file:
        group, _, option = err.missing_cfg_file.rpartition("/")
        options = err.options or sorted(p.stem for p in Path(CONFIG_DIR, group).glob("*.yaml"))
        return (f"config error: {group}={option}: no such option (conf/{group}/{option}.yaml); "
                f"{group} has: {', '.join(options)}")
    full_key = getattr(err.__cause__, "full_key", None)
    if isinstance(err, ConfigCompositionException) and full_key and \
            type(err.__cause__).__name__ in ("ConfigAttributeError", "ConfigKeyError"):
        key = str(full_key)
        given = str(err).partition("use +")[2].strip() or f"{key}=..."  # Hydra's hint
        known = known_keys(key.rpartition(".")[0])
        if key.rpartition(".")[2] in known or not known:  # a key of a node not there yet
            return f"config error: {key}: not in the config; to add it, use +{given}"
        return f"config error: {key}: {unknown_key(key, known)} (set in the command line " \
               f"({given}))"
    cause = f": {err.__cause__}" if err.__cause__ is not None else ""
    return f"config error: {err}{cause}"


def tell(line: str) -> None:
    """``line`` on stderr, and in the run's log file where logging goes to one."""
    sys.stderr.write(line + "\n")
    record = logging.getLogger("pipeline").makeRecord("pipeline", logging.ERROR, __file__, 0,
                                                      line, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def in_one_line(run_and_report: Callable[[Callable[[], Any]], Any]
                ) -> Callable[[Callable[[], Any]], Any]:
    """Hydra's ``run_and_report`` (what prints an error of composing or running the app), with
    the errors a user causes told in one line and exit 1; others it reports as before."""
    def report(func: Callable[[], Any]) -> Any:
        def told() -> Any:
            try:
                return func()
            except Exception as err:
                line = None if full_error() else one_line(err, RUN_FOLDER)
                if line is None:
                    raise
                tell(line)
                raise SystemExit(1) from None
        return run_and_report(told)
    return report


def install() -> None:
    """Make Hydra's entry point (``hydra.main``) tell the errors a user causes in one line:
    Hydra's composition errors (an unknown override key or group option, an unparsable
    override) and a run folder it cannot make come before the task function runs, so only
    this wrapper of its reporting sees them."""
    from hydra._internal import utils

    if not getattr(utils.run_and_report, "in_one_line", False):
        utils.run_and_report = in_one_line(utils.run_and_report)
        utils.run_and_report.in_one_line = True
