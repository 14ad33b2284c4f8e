"""The NMT-stage table (F7, C5): every translate unit's per-sentence and per-piece measures as
curves per model, set, step and measure, with the references' own values."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from analysis import nmt_stages
from analysis.settings import AnalysisSettings
from analysis.tables.registry import NMT_STAGES


def translation_tables(units: Mapping[str, Path], seed: int, settings: AnalysisSettings
                       ) -> dict[str, pd.DataFrame]:
    """The curves of every translate unit (model -> unit directory), token accuracy per bucket
    of ``claims.c5.freq_buckets``; none without a translation model."""
    curves = []
    for model, unit in sorted(units.items()):
        unit = Path(unit)
        tokens = unit / "tokens.parquet"
        c = nmt_stages.unit_curves(
            pd.read_parquet(unit / "sentences.parquet"),
            pd.read_parquet(unit / "checkpoints.parquet"),
            pd.read_parquet(unit / "reference.parquet"),
            tokens=pd.read_parquet(tokens) if tokens.is_file() else None,
            edges=settings.claims.c5.freq_buckets)
        curves.append(c.assign(model=model, seed=seed))
    if not curves:
        return {}
    return {NMT_STAGES: pd.concat(curves, ignore_index=True)}
