"""The aggregate stage: several seeds' analyses pooled (mean and CI over seeds for every table),
the claims tested across seeds (the seed as the unit of replication), S2 (each final model
against the same model trained with another seed) with each layer's learned and finished
tests, the figures with CI bands and the report.

inputs["seeds"] maps each seed of `aggregate.seeds` to that seed's train and extract units and
analyze directory, found through their stage keys (pipeline.plan).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from analysis.fields import setting
from analysis.settings import AnalysisSettings, PlotSettings
from pipeline.config import typed
from pipeline.stages.plot import render
from pipeline.stages.stage import Stage

log = logging.getLogger(__name__)


@dataclass
class AggregateConfig:
    """conf/aggregate: the seeds pooled and the interval of every pooled number."""

    seeds: list[int] = setting(help="the seeds whose analyses are pooled")
    ci: float = setting(gt=0, lt=1, help="the t-interval's level for every pooled number")


def run_aggregate(cfg: DictConfig, out: Path, inputs: dict) -> dict:
    """Stage function: pooled tables, S2, figures and report under ``out``."""
    from analysis import claims, dynamics
    from analysis.tables import registry as T
    from pipeline.tables import load_tables, write_tables

    seeds = inputs["seeds"]
    if len(seeds) < 2:
        raise ValueError(f"aggregate.seeds={sorted(seeds)}: pooling needs at least two seeds")
    settings = typed(cfg.aggregate, AggregateConfig)
    log.info("pooling seeds %s", sorted(seeds))
    pooled = dynamics.across_seeds(
        [load_tables(Path(s["analyze"]) / "tables") for _, s in sorted(seeds.items())], seeds,
        typed(cfg.analysis, AnalysisSettings), settings.ci)
    answer = pooled.get(T.ANSWER)
    if answer is not None and len(answer):
        log.info("verdicts (%s):\n%s", claims.seeds_sentence(answer),
                 answer[answer.role == "primary"][["claim", "metric", "n_seeds", "effect", "p_holm",
                                                   "verdict"]].to_string(index=False))
    rows = write_tables(Path(out) / "tables", pooled)
    render(pooled, Path(out), typed(cfg.plot, PlotSettings),
           f"Learning dynamics: experiment '{cfg.name}', mean over seeds {sorted(seeds)}")
    return {"seeds": sorted(seeds), "tables": rows}


STAGE = Stage("aggregate", ("aggregate", "analysis", "plot"), ("train", "extract", "analyze"),
              code=("pipeline.stages.aggregate",), run=run_aggregate, across_seeds=True)
