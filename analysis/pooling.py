"""Pooling several seeds' analysis tables: the mean over seeds of every measured column with a
t-interval, and the claims evaluated per seed and on the mean curves. Pure pandas.

Every table the analyze stage writes has an entry in ``VALUES`` (its measured columns, and the
per-seed columns that are not worth pooling); a table without one is an error, so a new table
cannot silently drop out of the pooled report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from analysis import claims
from analysis.settings import Claims

# Per table: the columns averaged over seeds (the first one gets the CI), and columns that
# differ between seeds without being results worth pooling (dropped).
VALUES: dict[str, tuple[list[str], list[str]]] = {
    "convergence": (["value", "baseline", "k_a", "k_b"], ["baseline_std"]),
    "tagger": (["value", "baseline", "k_a", "k_b"], ["baseline_std"]),
    "layer_matrix": (["value", "k_a", "k_b"], ["baseline", "baseline_std"]),
    "per_tag": (["value", "baseline", "k_a", "k_b", "ref_init"], ["baseline_std"]),
    "family": (["value", "baseline", "k_a", "k_b"], ["baseline_std"]),
    "intrinsic_dim": (["k", "k_s2", "k_s", "rank"], []),
    "concentration": (["mean", "median"], ["ci_low", "ci_high", "n_nan"]),
    "function_content": (["difference"], ["ci_low", "ci_high"]),
    "sanity_tokens": (["value", "baseline", "k_a", "k_b"], ["baseline_std"]),
    "checkpoints": (["train_loss", "valid_loss", "valid_ppl", "tokens_seen", "epoch", "epochs"],
                    []),
    "sensitivity": (["value", "reference", "k_a", "k_b"], []),
    "nmt_stages": (["value", "reference"], []),
    "models": (["final_valid_ppl", "test_ppl", "test_accuracy", "majority_baseline",
                "test_bleu", "epochs", "plateau_gain", "test_bleu_earlier", "test_bleu_rise"],
               ["majority_tag", "learned", "not_learned_because"]),
}
FIRST_SEED = ("sizes", "settings")    # the same for every seed: taken from the first
PER_SEED = ("nmt_stage_resamples",)   # read by each seed's claims only: not pooled
# evaluated again on the pooled tables
CLAIM_TABLES = ("claims", "claims_summary", "answer", "sensitivity_summary")


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
    """Pooled tables (and the claims per seed and on the pooled curves) from several seeds'
    tables; every table of the runs is pooled, taken from the first seed, or re-evaluated."""
    names = sorted({name for t in runs for name in t})
    unknown = [n for n in names if n not in VALUES and n not in FIRST_SEED
               and n not in CLAIM_TABLES and n not in PER_SEED]
    if unknown:
        raise ValueError(f"tables {unknown} have no pooling rule: add them to "
                         "analysis.pooling.VALUES (or FIRST_SEED)")
    out = {}
    for name in names:
        if name in VALUES:
            values, drop = VALUES[name]
            parts = [t[name] for t in runs if name in t and len(t[name])]
            if parts:
                out[name] = pool(pd.concat(parts, ignore_index=True), values, drop, level)
        elif name in FIRST_SEED:
            out[name] = runs[0][name]
    per_seed = pd.concat([t["claims"] for t in runs if "claims" in t], ignore_index=True)
    if len(per_seed):
        out["claims_over_seeds"] = pool_claims(per_seed, level)
        out["answer"] = claims.answer(per_seed, cs, level)
    out["claims"] = claims.evaluate(out, cs)  # on the mean curves
    out["claims_summary"] = claims.summarize(out["claims"])
    return out


__all__ = ["FIRST_SEED", "PER_SEED", "VALUES", "aggregate", "pool", "pool_claims", "t_interval"]
