"""Sweeps (`python -m pipeline -m ...`, any Hydra launcher): a failed job is recorded instead
of ending the sweep, and at the end every failed job is reported by name with its log; the
sweep then exits non-zero. Rerunning the same command resumes from the stage cache (each
job's finished stages and models are reused), so only what failed or never ran is redone.
"""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

log = logging.getLogger(__name__)
FAILED = "failed_jobs.jsonl"


def in_sweep() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def record_failure(err: BaseException) -> None:
    """Append this job's failure (overrides, error, log path) to the sweep's record."""
    hc = HydraConfig.get()
    log_file = Path(hc.runtime.output_dir) / f"{hc.job.name}.log"
    record = {"job": hc.job.num, "overrides": list(hc.overrides.task),
              "error": f"{type(err).__name__}: {err}"[:2000], "log": str(log_file),
              "traceback": traceback.format_exc()[-4000:]}
    with open(Path(hc.sweep.dir) / FAILED, "a") as f:
        f.write(json.dumps(record) + "\n")
    log.error("job %d (%s) failed: %s; log %s", record["job"], " ".join(record["overrides"]),
              record["error"], log_file)


class SweepReport(Callback):
    """At the end of a sweep: every failed job by name and log, and a non-zero exit."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        path = Path(config.hydra.sweep.dir) / FAILED
        if not path.is_file():
            return
        failed = [json.loads(line) for line in path.read_text().splitlines() if line]
        lines = [f"  job {r['job']} ({' '.join(r['overrides'])}): {r['error'].splitlines()[0]}"
                 f"\n    log: {r['log']}" for r in failed]
        log.error("%d job(s) of the sweep failed:\n%s\nRerun the same command: finished stages "
                  "and models are reused.", len(failed), "\n".join(lines))
        raise SystemExit(1)
