"""The plot stage: every figure and the report, from the analyze stage's tables alone.

Reads inputs["analyze"]/tables/*.parquet, writes out/figures/*.png|pdf, out/report.md and
out/report.html. Loads no model and no representation (the default experiment: 33 figures,
PNG and PDF, in about 20 s on 2 cores, most of it matplotlib rendering).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from analysis.settings import PlotSettings
from pipeline.config import typed
from pipeline.stages.stage import Stage

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def render(tables: dict[str, pd.DataFrame], out: Path, ps: PlotSettings, title: str) -> dict:
    """Figures, captions.json and the report for ``tables`` into ``out``."""
    from tqdm import tqdm  # matplotlib loads when figures are drawn, not when planned

    from analysis import report
    from analysis.figures.registry import draw_all, skipped_notes

    out = Path(out)
    bar = tqdm(desc="figures", unit="fig")
    drawn = draw_all(tables, out / "figures", ps, progress=lambda name: bar.update())
    bar.close()
    notes = skipped_notes(tables)
    (out / "captions.json").write_text(json.dumps({f["name"]: f["caption"] for f in drawn},
                                                  indent=1))
    paths = report.write_report(out, tables, drawn, notes, title=title)
    log.info("%d figures and %s, %s", len(drawn), paths["md"], paths["html"])
    return {"figures": [f["name"] for f in drawn], "report": str(paths["md"]),
            "html": str(paths["html"]), "not_drawn": notes}


def run_plot(cfg: DictConfig, out: Path, inputs: dict[str, Path]) -> dict:
    """Stage function: figures and report from inputs["analyze"]/tables."""
    from pipeline.tables import load_tables

    tables = load_tables(Path(inputs["analyze"]) / "tables")
    ps = typed(cfg.plot, PlotSettings)
    return render(tables, Path(out), ps, f"Learning dynamics: experiment '{cfg.name}'")


STAGE = Stage("plot", ("plot",), ("analyze",), code=("pipeline.stages.plot",), run=run_plot)
