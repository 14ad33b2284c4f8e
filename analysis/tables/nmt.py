"""The NMT-stage tables (F7, C5): every translate unit's per-sentence measures as curves per
model, set, step and measure, and their sentence-bootstrap resamples."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from analysis import nmt_stages
from analysis.settings import AnalysisSettings
from analysis.tables.registry import NMT_STAGE_RESAMPLES, NMT_STAGES


def translation_tables(units: Mapping[str, Path], seed: int, settings: AnalysisSettings
                       ) -> dict[str, pd.DataFrame]:
    """The curves of every translate unit (model -> unit directory) and their resamples;
    none without a translation model."""
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
    return {NMT_STAGES: pd.concat(curves, ignore_index=True),
            NMT_STAGE_RESAMPLES: pd.concat(resamples, ignore_index=True)}
