"""The verdicts: each claim tested across seeds, the unit of replication.

A model's units (probes, layers, taggers) share its training, so they are not independent
evidence: each seed's units are summarised by their mean, and the claim is tested on those
seed means. The primary reading of each claim (its metric and smallest effect of interest,
``claims.primary``, fixed before any run) decides: a two-sided one-sample t-test of the seed
means against 0 (df = seeds - 1), Holm-adjusted across the primary claims, with the effect's
t-interval; an equivalence test (TOST against ± the smallest effect), Holm-adjusted likewise;
and beside them the exact sign-flip test over seeds, distribution-free but no smaller than
1 / 2^seeds. Verdicts:

- **holds**: the primary test significant after Holm and the interval at or above the
  smallest effect;
- **reversed**: significant after Holm and the interval at or below minus the smallest effect;
- **no effect**: the equivalence test significant after Holm;
- **inconclusive**: otherwise (and with one seed: no test across seeds).

Every other metric and reading is tested the same way without adjustment and reported as
agreement, not as a vote.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import DescrStatsW

from analysis.claims.rows import FAIL, FIGURES, PASS, base_claim, statement
from analysis.settings import Claims

HOLDS, REVERSED, NO_EFFECT, INCONCLUSIVE = "holds", "reversed", "no effect", "inconclusive"
UNTESTED = "not evaluated"
PRIMARY, AGREEMENT = "primary", "agreement"
ONE_SEED = "one seed: no test across seeds; run scripts/reproduce.sh"
ANSWER_COLUMNS = ["claim", "role", "metric", "statement", "statistic", "min_effect", "n_seeds",
                  "units", "effect", "ci_low", "ci_high", "p", "p_holm", "p_signflip",
                  "p_signflip_min", "p_tost", "p_tost_holm", "verdict", "reason",
                  "agreement", "figure"]


def seed_means(claims: pd.DataFrame) -> pd.DataFrame:
    """Per (claim, metric, seed): the mean statistic over the seed's evaluated units and
    their count (NA units left out)."""
    done = claims[claims.verdict.isin([PASS, FAIL])
                  & np.isfinite(claims.value.astype(float))]
    return (done.astype({"value": float}).groupby(["claim", "metric", "seed"], sort=True)
            .value.agg(["mean", "count"]).reset_index())


def seed_test(x: np.ndarray, min_effect: float, level: float) -> dict:
    """The tests of one claim and metric over its seed means ``x``: the mean (``effect``),
    its t-interval at ``level``, the two-sided t-test's p, the one-sided exact sign-flip p
    (the claim's direction) with the smallest it can be, and the TOST p against
    ± ``min_effect``; NaN where fewer than two seeds allow no test."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    out = dict(n_seeds=n, effect=float(x.mean()) if n else np.nan, ci_low=np.nan,
               ci_high=np.nan, p=np.nan, p_signflip=np.nan,
               p_signflip_min=0.5 ** n if n else np.nan, p_tost=np.nan)
    if n < 2:
        return out
    with warnings.catch_warnings():  # identical seed means: scipy warns, the p is exact
        warnings.simplefilter("ignore", RuntimeWarning)
        t = stats.ttest_1samp(x, 0.0)
        ci = t.confidence_interval(level)
        out.update(p=float(t.pvalue), ci_low=float(ci.low), ci_high=float(ci.high),
                   p_tost=float(DescrStatsW(x).ttost_mean(-min_effect, min_effect)[0]))
    out["p_signflip"] = float(stats.permutation_test(
        (x,), lambda v, axis: np.mean(v, axis=axis), permutation_type="samples",
        alternative="greater", n_resamples=np.inf).pvalue)
    return out


def holm(p: pd.Series) -> pd.Series:
    """Holm-adjusted p-values of the finite entries (NaN stays NaN)."""
    out = pd.Series(np.nan, index=p.index)
    finite = p[np.isfinite(p.astype(float))]
    if len(finite):
        out[finite.index] = multipletests(finite.to_numpy(dtype=float), method="holm")[1]
    return out


def verdict(test: dict, p: float, p_tost: float, min_effect: float, alpha: float
            ) -> tuple[str, str]:
    """One of the four verdicts from a claim's tests (``p``, ``p_tost``: adjusted or not),
    with the reason."""
    if test["n_seeds"] == 0:
        return UNTESTED, "no unit could be evaluated"
    if test["n_seeds"] < 2:
        return INCONCLUSIVE, ONE_SEED
    low, high = test["ci_low"], test["ci_high"]
    if p < alpha and low >= min_effect:
        return HOLDS, f"p < {alpha:g} and the interval at or above {min_effect:g}"
    if p < alpha and high <= -min_effect:
        return REVERSED, f"p < {alpha:g} and the interval at or below -{min_effect:g}"
    if p_tost < alpha:
        return NO_EFFECT, f"equivalent to 0 within ±{min_effect:g} (TOST p < {alpha:g})"
    if p < alpha:
        return INCONCLUSIVE, f"p < {alpha:g} but the interval reaches below ±{min_effect:g}"
    return INCONCLUSIVE, f"neither a difference from 0 nor equivalence within ±{min_effect:g}"


def answer(claims: pd.DataFrame, cs: Claims) -> pd.DataFrame:
    """The verdict per claim (its primary reading, Holm across the primary claims), and every
    other reading and metric as agreement (columns ANSWER_COLUMNS)."""
    means = seed_means(claims) if len(claims) else pd.DataFrame(
        columns=["claim", "metric", "seed", "mean", "count"])
    statistic = (claims.groupby(["claim", "metric"]).statistic.first()
                 if len(claims) else pd.Series(dtype=str))
    rows = []
    for claim, primary in cs.primary.items():
        x = means[(means.claim == claim) & (means.metric == primary.metric)]
        rows.append(dict(claim=claim, role=PRIMARY, metric=primary.metric,
                         min_effect=primary.min_effect,
                         units=int(x["count"].sum()),
                         **seed_test(x["mean"].to_numpy(), primary.min_effect, cs.level)))
    for (claim, metric), x in means.groupby(["claim", "metric"], sort=True):
        if claim in cs.primary and metric == cs.primary[claim].metric:
            continue
        if base_claim(claim) not in cs.primary:
            continue
        effect = cs.primary[base_claim(claim)].min_effect
        rows.append(dict(claim=claim, role=AGREEMENT, metric=metric, min_effect=effect,
                         units=int(x["count"].sum()),
                         **seed_test(x["mean"].to_numpy(), effect, cs.level)))
    out = pd.DataFrame(rows)
    primary = out.role == PRIMARY
    out["p_holm"] = holm(out.p.where(primary))
    out["p_tost_holm"] = holm(out.p_tost.where(primary))
    decided = [verdict(r, r["p_holm"] if r["role"] == PRIMARY else r["p"],
                       r["p_tost_holm"] if r["role"] == PRIMARY else r["p_tost"],
                       r["min_effect"], cs.alpha) for r in out.to_dict("records")]
    out["verdict"] = [v for v, _ in decided]
    out["reason"] = [why if role == PRIMARY else f"{why} (not adjusted: agreement only)"
                     for (_, why), role in zip(decided, out.role, strict=True)]
    out["statement"] = [statement(c) for c in out.claim]
    out["statistic"] = [statistic.get((c, m), "") for c, m in zip(out.claim, out.metric,
                                                                   strict=True)]
    out["figure"] = [FIGURES.get(base_claim(c), "") for c in out.claim]
    out["agreement"] = [_agreement(out, r) if r["role"] == PRIMARY else ""
                        for r in out.to_dict("records")]
    return out[ANSWER_COLUMNS]


def _agreement(out: pd.DataFrame, primary: dict) -> str:
    """How many of the claim's other metrics (same reading) reach the primary's verdict."""
    others = out[(out.role == AGREEMENT) & (out.claim == primary["claim"])]
    if others.empty:
        return ""
    same = int((others.verdict == primary["verdict"]).sum())
    return f"{same} of {len(others)} other metrics: {primary['verdict']}"


def seeds_sentence(answer: pd.DataFrame) -> str:
    """How many seeds the verdicts rest on and the smallest p they allow."""
    n = int(answer.n_seeds.max()) if len(answer) and answer.n_seeds.notna().any() else 0
    if n < 2:
        return f"{n} seed{'s' if n != 1 else ''}: no test across seeds; run scripts/reproduce.sh."
    return (f"{n} seeds: the t-test over seed means has {n - 1} degrees of freedom; the exact "
            f"sign-flip test beside it can go no lower than 1/{2 ** n} = {0.5 ** n:.3g}.")


__all__ = ["AGREEMENT", "HOLDS", "INCONCLUSIVE", "NO_EFFECT", "PRIMARY", "REVERSED",
           "UNTESTED", "answer", "holm", "seed_means", "seed_test", "seeds_sentence",
           "verdict"]
