"""Entry point: `python -m pipeline [experiment=NAME] [stages=[...]] [mirror=DIR]
[artifacts_dir=DIR] [seed=N] [force=[...]] [dry_run=true]`."""

from __future__ import annotations

import logging
import multiprocessing

import hydra
from omegaconf import DictConfig

from pipeline.config import CONFIG_DIR, CONFIG_NAME
from pipeline.errors import full_error, install, one_line, tell
from pipeline.jobs import Interrupted, exit_code
from pipeline.runner import run_pipeline
from pipeline.runtime import set_threads
from pipeline.schema import validate
from pipeline.sweep import in_sweep, record_failure

log = logging.getLogger("pipeline")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> None:
    if multiprocessing.get_start_method(allow_none=True) not in (None, "fork", "spawn",
                                                                 "forkserver"):
        # A joblib (loky) worker: its start method is unknown to the processes we spawn.
        multiprocessing.set_start_method(None, force=True)
    try:
        validate(cfg)  # before any work: unknown keys, types and ranges, naming key and file
        set_threads(int(cfg.train.threads))
        run_pipeline(cfg)
    except Interrupted as stop:
        log.warning("%s: stopped; what finished is kept, and rerunning the same command "
                    "resumes", stop)
        raise SystemExit(exit_code()) from None
    except Exception as err:
        if in_sweep():
            record_failure(err)  # the sweep goes on; SweepReport names the failures at the end
            return
        line = None if full_error() else one_line(err)  # a user's error: what and where
        if line is None:
            raise
        tell(line)
        raise SystemExit(1) from None


if __name__ == "__main__":
    install()  # Hydra's own errors (before main runs) in one line too
    main()
