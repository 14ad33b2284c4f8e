"""The analyze stage: learning-dynamics tables (and claim checks) from extracted representations.

Reads the extract units (inputs["extract"]: model -> unit dir holding model.json and one
representation store per probe), the train units (inputs["train"]: model -> unit dir with
checkpoints.csv and eval.json) and the translate units of the translation models
(inputs["translate"]), the compress units (inputs["compress"]) and the stability and tickets
units (inputs["stability"], inputs["tickets"]; W_k stable by ``stability.threshold``), writes
out/tables/<name>.parquet and .csv.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from analysis.settings import AnalysisSettings
from pipeline.config import typed
from pipeline.stages.stage import Stage

log = logging.getLogger(__name__)


def run_analyze(cfg: DictConfig, out: Path, inputs: dict[str, Path]) -> dict:
    """Stage function: every analysis table and the claims, under out/tables/."""
    import pandas as pd  # the analysis libraries load when the stage runs, not when planned

    from analysis import claims, dynamics
    from analysis.tables import registry as T
    from pipeline.tables import write_tables

    tables = dynamics.analyze_units(inputs["extract"], inputs["train"],
                                    inputs.get("translate", {}), int(cfg.seed),
                                    typed(cfg.analysis, AnalysisSettings),
                                    workers=int(cfg.train.parallel),
                                    compress_units=inputs.get("compress", {}),
                                    stability_units=inputs.get("stability", {}),
                                    tickets_units=inputs.get("tickets", {}),
                                    threshold=float(OmegaConf.select(
                                        cfg, "stability.threshold", default=float("nan"))))
    answer = tables[T.ANSWER]
    primary = answer[answer.role == "primary"]
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        log.info("verdicts (%s):\n%s", claims.seeds_sentence(answer), primary[
            ["claim", "metric", "n_seeds", "effect", "verdict", "reason"]].to_string(index=False))
    rows = write_tables(Path(out) / "tables", tables)
    return {"tables": rows, "verdicts": {f"{r.claim}/{r.metric}": r.verdict
                                         for r in answer.itertuples()}}


STAGE = Stage("analyze", ("analysis", "stability.threshold"),
              ("train", "extract", "translate", "compress", "stability", "tickets"),
              code=("pipeline.stages.analyze",), run=run_analyze)
