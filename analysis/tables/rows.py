"""Rows and columns shared by the similarity tables: the column order, the tag values of
unrestricted and pooled rows, and the identifying part of every row.

Every similarity row says what was compared (model/step/layer on each side, the token
restriction), with which metric (SVCCA at a variance rule or a fixed k, PWCCA, CKA, ...), the
dimensions that entered (k_a, k_b), the token count and, where computed, the chance level at
the same size (shuffled token pairing); a row whose metric could not be computed has NaN and
its ``na_reason``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.runs import ModelRun

SIM_COLUMNS = [
    "analysis", "model", "kind", "seed", "probe", "side", "model_b", "step_a", "step_b",
    "fraction_a", "layer_a", "layer_b", "depth_a", "depth_b", "tag", "tag_family",
    "freq_matched", "metric", "value", "k_a", "k_b", "n_tokens", "n_types", "variance_rule",
    "baseline", "baseline_std",
]
ALL = "all"          # tag value of unrestricted rows
POOLED = "pooled"    # tag value of family rows pooled over tags


def frame(rows: list[dict], columns: Sequence[str] = SIM_COLUMNS) -> pd.DataFrame:
    """Rows as a table with the given column order (absent columns are NaN)."""
    table = pd.DataFrame(rows)
    for c in columns:
        if c not in table:
            table[c] = np.nan
    extra = [c for c in table.columns if c not in columns]
    return table[list(columns) + extra]


def base_row(run: ModelRun, probe: str, side: str, **kw) -> dict:
    return dict(model=run.name, kind=run.kind, seed=run.seed, probe=probe, side=side, **kw)


def concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The non-empty parts as one table (an empty similarity table when there are none)."""
    parts = [t for t in parts if not t.empty]
    return pd.concat(parts, ignore_index=True) if parts else frame([])


def not_computed(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """NA rows per table and metric, with one example reason (for the log and the report)."""
    rows = []
    for name, t in sorted(tables.items()):
        if "na_reason" not in t or t.na_reason.isna().all():
            continue
        na = t[t.na_reason.notna()]
        for metric, g in na.groupby("metric", sort=True):
            rows.append(dict(table=name, metric=metric, rows=len(g), of=int((t.metric == metric)
                                                                            .sum()),
                             example=str(g.na_reason.iloc[0])))
    return pd.DataFrame(rows, columns=["table", "metric", "rows", "of", "example"])
