"""Pooling several seeds' analysis tables: the mean over seeds of every measured column with a
t-interval, and the claims tested across seeds on each seed's unit rows. Pure pandas.

How each table pools is its registry entry's (analysis/tables/registry.py); a table without
one is an error, so a new table cannot silently drop out of the pooled report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from analysis import claims
from analysis.settings import Claims
from analysis.tables import registry as T


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the t-distribution confidence interval of the mean of the finite values
    (NaN bounds with fewer than two)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.nan, np.nan, np.nan
    mean = float(v.mean())
    if v.size < 2:
        return mean, np.nan, np.nan
    half = stats.t.ppf((1 + level) / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return mean, mean - half, mean + half


def pool(df: pd.DataFrame, value_columns: Sequence[str], drop: Sequence[str] = (),
         level: float = 0.95) -> pd.DataFrame:
    """Mean over seeds of ``value_columns`` for every row key (all other columns); the first
    value column also gets ci_low, ci_high (its t-interval); n_seeds counts each row's seeds."""
    values = [c for c in value_columns if c in df]
    if not values:
        raise ValueError(f"none of {list(value_columns)} in the table's columns "
                         f"{list(df.columns)}")
    keys = [c for c in df.columns if c not in values and c not in drop and c != "seed"]
    g = df.groupby(keys, dropna=False, sort=False)
    out = g[values].mean()
    bounds = g[values[0]].apply(lambda v: t_interval(v.to_numpy(), level)[1:])
    out["ci_low"] = [b[0] for b in bounds]
    out["ci_high"] = [b[1] for b in bounds]
    out["n_seeds"] = g["seed"].nunique() if "seed" in df else g[values[0]].count()
    out = out.reset_index()
    out.insert(0, "seed", "mean")
    return out


def pool_claims(per_seed: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Claims over seeds: mean statistic with its CI and how many seeds pass."""
    keys = ["claim", "model", "probe", "scope", "metric", "statistic", "threshold"]
    rows = []
    for key, g in per_seed.groupby(keys, dropna=False, sort=True):
        mean, low, high = t_interval(g.value.to_numpy(), level)
        rows.append(dict(zip(keys, key, strict=True), value=mean, ci_low=low, ci_high=high,
                         n_seeds=len(g), n_pass=int((g.verdict == "PASS").sum()),
                         n_fail=int((g.verdict == "FAIL").sum())))
    return pd.DataFrame(rows)


def aggregate(runs: Sequence[Mapping[str, pd.DataFrame]], cs: Claims, level: float = 0.95
              ) -> dict[str, pd.DataFrame]:
    """Pooled tables (and the claims tested across seeds) from several seeds' tables; every
    table of the runs is pooled, taken from the first seed, or re-evaluated, as its registry
    entry says."""
    names = sorted({name for t in runs for name in t})
    unknown = [n for n in names if n not in T.TABLES or T.TABLES[n].pooling == T.ACROSS]
    if unknown:
        raise ValueError(f"tables {unknown} have no pooling rule: register them in "
                         "analysis/tables/registry.py (a table made across seeds has none)")
    out = {}
    for name in names:
        entry = T.TABLES[name]
        if entry.pooling == T.MEAN:
            parts = [t[name] for t in runs if name in t and len(t[name])]
            if parts:
                out[name] = pool(pd.concat(parts, ignore_index=True), entry.pooled,
                                 entry.dropped, level)
        elif entry.pooling == T.FIRST:
            out[name] = runs[0][name]
    # every seed's unit rows: the detail under the verdicts, which test their seed means
    per_seed = pd.concat([t[T.CLAIMS] for t in runs if T.CLAIMS in t], ignore_index=True)
    out[T.CLAIMS] = per_seed
    out[T.CLAIMS_SUMMARY] = claims.summarize(per_seed)
    out[T.ANSWER] = claims.answer(per_seed, cs)
    if len(per_seed):
        out[T.CLAIMS_OVER_SEEDS] = pool_claims(per_seed, level)
    return out


__all__ = ["aggregate", "pool", "pool_claims", "t_interval"]
