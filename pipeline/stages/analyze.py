"""The analyze stage: learning-dynamics tables (and claim checks) from extracted representations.

Reads the extract units (inputs["extract"]: model -> unit dir holding model.json and one
representation store per probe), the train units (inputs["train"]: model -> unit dir with
checkpoints.csv and eval.json) and the translate units of the translation models
(inputs["translate"]), writes out/tables/<name>.parquet and .csv.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from analysis.settings import AnalysisSettings, Learned
from pipeline.config import typed
from pipeline.stages.stage import Stage

if TYPE_CHECKING:
    import pandas as pd

    from analysis.dynamics import ModelRun

log = logging.getLogger(__name__)


def models_table(runs: list[ModelRun], train_units: dict[str, Path],
                 extract_units: dict[str, Path], criteria: Learned,
                 convergence: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per model: kind, family, role, seed, training length, its evaluation and
    whether it has learned by the criteria fixed in config (analysis.learned)."""
    import numpy as np
    import pandas as pd

    from analysis.learned import endpoint, late_cka, learned

    rows = []
    for run in runs:
        c = run.checkpoints.sort_values("step")
        unit = Path(train_units[run.name])
        metrics = json.loads((unit / "eval.json").read_text())
        source = (json.loads((unit / "source.json").read_text())["source"]
                  if (unit / "source.json").is_file() else "trained by this pipeline")
        manifest = json.loads((Path(extract_units[run.name]) / "model.json").read_text())
        rows.append(dict(model=run.name, kind=run.kind, family=run.family, source=source,
                         subword=manifest.get("subword"),
                         reference=run.reference, seed=run.seed, checkpoints=len(c),
                         final_step=int(c.step.iloc[-1]),
                         epochs=float(c.epochs.iloc[-1]) if "epochs" in c else np.nan,
                         final_valid_ppl=float(c.valid_ppl.iloc[-1]), **metrics,
                         **learned(c, metrics, criteria), **endpoint(c, criteria),
                         **late_cka(convergence, run.name, criteria)))
    return pd.DataFrame(rows)


def translation_tables(units: dict[str, Path], seed: int, settings: AnalysisSettings
                       ) -> dict[str, pd.DataFrame]:
    """The NMT-stage curves of every translate unit (``nmt_stages``: per model, set, step and
    measure) and their sentence-bootstrap resamples (``nmt_stage_resamples``, for C5)."""
    import pandas as pd

    from analysis import nmt_stages

    curves, resamples = [], []
    for model, unit in sorted(units.items()):
        unit = Path(unit)
        c, r = nmt_stages.unit_curves(
            pd.read_parquet(unit / "sentences.parquet"),
            pd.read_parquet(unit / "checkpoints.parquet"),
            pd.read_parquet(unit / "reference.parquet"), settings.claims.c5.resamples,
            settings.seed)
        curves.append(c.assign(model=model, seed=seed))
        resamples.append(r.assign(model=model, seed=seed))
    if not curves:
        return {}
    return {"nmt_stages": pd.concat(curves, ignore_index=True),
            "nmt_stage_resamples": pd.concat(resamples, ignore_index=True)}


def run_analyze(cfg: DictConfig, out: Path, inputs: dict[str, Path]) -> dict:
    """Stage function: every analysis table and the claims, under out/tables/."""
    import pandas as pd  # the analysis libraries load when the stage runs, not when planned

    from analysis import claims, dynamics, report, repstore
    from pipeline.tables import write_tables

    settings = typed(cfg.analysis, AnalysisSettings)
    runs = dynamics.discover_runs(inputs["extract"], inputs["train"], int(cfg.seed))
    for found in (f for run in runs for root in run.stores.values()
                  for f in repstore.nonfinite(root)):
        log.warning("%s: the rows that use it are NA", found)
    log.info("analyzing %d models: %s", len(runs), ", ".join(r.name for r in runs))
    tables = dynamics.analyze(runs, settings, progress=True, workers=int(cfg.train.parallel))
    tables.update(translation_tables(inputs.get("translate", {}), int(cfg.seed), settings))
    late = pd.concat([tables.get("convergence", pd.DataFrame()),
                      dynamics.reference_late_cka(runs, settings)], ignore_index=True)
    tables["models"] = models_table(runs, inputs["train"], inputs["extract"], settings.learned,
                                    late)
    for row in report.not_computed(tables).itertuples():
        log.warning("%s: %d of %d %s rows not computed, e.g. %s", row.table, row.rows, row.of,
                    row.metric, row.example)
    tables["claims"] = claims.evaluate(tables, settings.claims)
    tables["claims_summary"] = claims.summarize(tables["claims"])
    tables["answer"] = claims.answer(tables["claims"], settings.claims)
    tables["sensitivity_summary"] = dynamics.sensitivity_verdicts(
        tables.get("sensitivity", pd.DataFrame()), settings)
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        log.info("claims:\n%s", tables["claims_summary"].drop(columns="statement")
                 .to_string(index=False))
    rows = write_tables(Path(out) / "tables", tables)
    verdicts = {f"{r.claim}/{r.metric}": r.verdict
                for r in tables["claims_summary"].itertuples()}
    return {"tables": rows, "claims": verdicts}


STAGE = Stage("analyze", ("analysis",), ("train", "extract", "translate"),
              code=("pipeline.stages.analyze",), run=run_analyze)
