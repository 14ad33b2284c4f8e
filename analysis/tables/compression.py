"""The compression tables (F8, F9, C6-C6c): every compress unit's qualities with each variant's
relative change from the unprojected, unpruned model, and per checkpoint the smallest number of
directions (k*) and the largest one-shot sparsity (s*) whose primary quality stays within the
tolerance (analysis.compression)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import compression as C
from analysis.compression import PROJECTION
from analysis.settings import AnalysisSettings
from analysis.tables.registry import COMPRESSION, COMPRESSION_SUMMARY

# the unit of `star`: log2 of the number of directions, or the share of weights pruned
LOG2_K, SPARSITY = "log2 k", "sparsity"
SUMMARY_KEYS = ["model", "role", "step", "share", "compress", "layer", "side", "dim", "method"]


def summarize(rows: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Per checkpoint, layer (projection) or model (pruning) and method: k* or s* of the
    primary quality, on the grid (``star_grid``) and interpolated (``star``: log2 k* or s*);
    pruning's grid includes sparsity 0, the unpruned model itself."""
    out = []
    primary = rows[rows.primary]
    for key, g in primary.groupby(SUMMARY_KEYS, dropna=False, sort=True):
        r = dict(zip(SUMMARY_KEYS, key, strict=True))
        reference, higher = float(g.reference.iloc[0]), bool(g.higher_better.iloc[0])
        if r["compress"] == PROJECTION:
            values = dict(zip(g.k.astype(int), g.value, strict=True))
            grid = C.smallest_within(values, reference, tolerance, higher)
            star = C.log2_k_star(values, reference, tolerance, higher)
            unit = LOG2_K
        else:
            values = {0.0: reference, **dict(zip(g.sparsity, g.value, strict=True))}
            grid = C.largest_within(values, reference, tolerance, higher)
            star = C.interpolated_s_star(values, reference, tolerance, higher)
            unit = SPARSITY
        out.append(dict(r, measure=g.measure.iloc[0], reference=reference,
                        star=star, star_grid=np.nan if grid is None else float(grid),
                        unit=unit, tolerance=tolerance))
    return pd.DataFrame(out)


def compression_tables(units: Mapping[str, Path], seed: int, settings: AnalysisSettings
                       ) -> dict[str, pd.DataFrame]:
    """The rows of every compress unit (model -> unit directory) with their relative change,
    and their summary; none without a compress unit."""
    parts = [pd.read_parquet(Path(unit) / "compression.parquet")
             for _, unit in sorted(units.items())]
    if not parts:
        return {}
    rows = pd.concat(parts, ignore_index=True).assign(seed=seed)
    rows["relative_change"] = [
        C.relative_change(v, ref, higher) for v, ref, higher in
        zip(rows.value, rows.reference, rows.higher_better, strict=True)]
    summary = summarize(rows, settings.compression.tolerance).assign(seed=seed)
    return {COMPRESSION: rows, COMPRESSION_SUMMARY: summary}
