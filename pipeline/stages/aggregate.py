"""The aggregate stage: several seeds' analyses pooled (mean and CI over seeds for every table,
claims per seed and on the pooled curves), S2 (each final model against the same model
trained with another seed), the figures with CI bands and the report.

inputs["seeds"] maps each seed of `aggregate.seeds` to that seed's train and extract units and
analyze directory, found through their stage keys (pipeline.plan).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from analysis.settings import AnalysisSettings, PlotSettings
from pipeline.config import typed
from pipeline.stages.plot import render
from pipeline.stages.stage import Stage

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def seed_table(seeds: dict[int, dict], settings: AnalysisSettings) -> pd.DataFrame:
    """S2 rows (dynamics.seed_to_seed) from every seed's extract units."""
    from analysis import dynamics

    probes = []
    for seed, inputs in sorted(seeds.items()):
        for run in dynamics.discover_runs(inputs["extract"], inputs["train"], seed):
            probes += [p for p in (dynamics.Probe.open(run, probe) for probe in run.stores)
                       if p.steps]
    return dynamics.seed_to_seed(probes, settings)


def run_aggregate(cfg: DictConfig, out: Path, inputs: dict) -> dict:
    """Stage function: pooled tables, S2, figures and report under ``out``."""
    import pandas as pd  # the analysis libraries load when the stage runs, not when planned

    from analysis import dynamics, pooling
    from pipeline.tables import load_tables, write_tables

    seeds = inputs["seeds"]
    if len(seeds) < 2:
        raise ValueError(f"aggregate.seeds={sorted(seeds)}: pooling needs at least two seeds")
    runs = [load_tables(Path(s["analyze"]) / "tables") for _, s in sorted(seeds.items())]
    level = float(cfg.aggregate.ci)
    log.info("pooling seeds %s", sorted(seeds))
    settings = typed(cfg.analysis, AnalysisSettings)
    pooled = pooling.aggregate(runs, settings.claims, level)
    pooled["seeds"] = seed_table(seeds, settings)
    pooled["sensitivity_summary"] = dynamics.sensitivity_verdicts(
        pooled.get("sensitivity", pd.DataFrame()), settings, pooled["seeds"],
        pooled.get("convergence"))
    rows = write_tables(Path(out) / "tables", pooled)
    ps = typed(cfg.plot, PlotSettings)
    render(pooled, Path(out), ps,
           f"Learning dynamics: experiment '{cfg.name}', mean over seeds {sorted(seeds)}")
    return {"seeds": sorted(seeds), "tables": rows}


STAGE = Stage("aggregate", ("aggregate", "analysis", "plot"), ("train", "extract", "analyze"),
              code=("pipeline.stages.aggregate",), run=run_aggregate, across_seeds=True)
