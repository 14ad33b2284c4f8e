"""What a stage declares: its config keys, its inputs, its code and its work, and what the
runner needs to know of a per-model stage (its data, disk estimate and summary table)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from omegaconf import DictConfig

StageFn = Callable[[DictConfig, Path, dict], dict]
UnitFn = Callable[[DictConfig, str, dict, Path, dict], dict]


class Disk(NamedTuple):
    """One model's disk estimate for a per-model stage: what it is (the total's label, e.g.
    "checkpoints"), its part of the model's log line, and its size in MB."""

    what: str
    text: str
    mb: float


# (config, a model's preset, the prepared data) -> that model's disk estimate
DiskFn = Callable[[DictConfig, dict, Path], Disk]
# (config, a model's preset, the prepared data) -> that model's work in the stage's own unit
# (e.g. parameters x tokens); pipeline/stage_costs.csv turns it into seconds per model kind
CostFn = Callable[[DictConfig, dict, Path], float]


@dataclass(frozen=True)
class Stage:
    """A step of the chain: the config its key depends on, the stages it reads, the modules it
    runs (for its code hash), and either a whole-stage function or a per-model unit function.
    ``check`` validates a cached (or resumable) result, raising store.Invalid to recompute."""

    name: str
    config: tuple[str, ...]
    needs: tuple[str, ...] = ()
    code: tuple[str, ...] = ()
    run: StageFn | None = None
    unit: UnitFn | None = None
    resumable: bool = False
    check: Callable[[Path], None] | None = None
    across_seeds: bool = False                    # reads `needs` for every aggregate.seeds
    # {name: content hash} of files outside the artifacts the stage (or a model's unit: its
    # preset as the second argument, None for a whole stage) reads; part of its key
    files: Callable[[DictConfig, dict | None], dict[str, str]] | None = None
    # which models a per-model stage has a unit for (the config and their preset; None: every
    # model)
    applies: Callable[[DictConfig, dict], bool] | None = None
    # a per-model stage: the stage whose result is the prepared data its models read (what
    # their cost and disk estimates are computed from)
    data: str | None = None
    # a per-model stage: each model's disk estimate, logged (with the totals) before any work
    disk: DiskFn | None = None
    # a per-model stage: each model's work, from which the runner estimates each chain's time
    # and starts the longest first (pipeline.costs)
    cost: CostFn | None = None
    # a per-model stage: the title under which its finished units' summaries are logged as
    # one table after its group has run (None: not logged)
    table: str | None = None
