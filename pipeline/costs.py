"""How long each model's per-model stages will take, estimated before any work, so that the
longest chain starts first even on a fresh machine: a stage's work for the model (its
declared ``cost``, e.g. parameters x tokens x updates) times the seconds one unit of that work
took for models of the same kind, from a small table calibrated once against measured stage
times (stage_costs.csv beside this module; scripts/calibrate_costs.py remakes it).
"""

from __future__ import annotations

import csv
import functools
import logging
import statistics
from collections.abc import Iterable, Mapping
from pathlib import Path

log = logging.getLogger(__name__)
TABLE = Path(__file__).with_name("stage_costs.csv")
COLUMNS = ("stage", "kind", "seconds_per_unit", "models", "runs", "source")


@functools.cache
def rates(path: Path = TABLE) -> dict[tuple[str, str], float]:
    """{(stage, kind): seconds per unit of the stage's work} from the cost table."""
    with open(path, newline="", encoding="utf-8") as f:
        return {(r["stage"], r["kind"]): float(r["seconds_per_unit"])
                for r in csv.DictReader(f)}


@functools.cache
def rate(stage: str, kind: str) -> float:
    """Seconds per unit of ``stage``'s work for a model of ``kind``: its calibrated rate, else
    the median of the kinds calibrated for the stage (said once), else 1."""
    table = rates()
    if (stage, kind) in table:
        return table[stage, kind]
    others = [v for (s, _), v in table.items() if s == stage]
    log.info("%s has no %s rate for kind %s: the median of the %d calibrated kinds is used",
             TABLE.name, stage, kind, len(others))
    return statistics.median(others) if others else 1.0


def estimate(cfg, spec: Mapping, data: Path, stages: Iterable) -> dict[str, float]:
    """{stage name: estimated seconds} of a model's ``stages`` (those that declare a cost)."""
    return {s.name: rate(s.name, str(spec.get("kind", ""))) * float(s.cost(cfg, spec, data))
            for s in stages if s.cost is not None}


def calibrate(runs: Iterable[tuple[str, str, str, float, float]], source: str) -> list[dict]:
    """Cost-table rows from measured units, each (stage, kind, model, seconds, work units):
    per stage and kind, the median over its units of seconds per unit of work."""
    groups: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for stage, kind, model, seconds, units in runs:
        if units > 0:
            groups.setdefault((stage, kind), []).append((model, seconds / units))
    return [dict(stage=stage, kind=kind,
                 seconds_per_unit=f"{statistics.median(r for _, r in got):.4g}",
                 models=len({m for m, _ in got}), runs=len(got), source=source)
            for (stage, kind), got in sorted(groups.items())]
