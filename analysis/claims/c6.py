"""C6-C6c, compression over training (issue 37), per unit and seed from the compression summary
(analysis.tables.compression): the interpolated k* in log2 (``star`` of projection rows) and s*
(of pruning rows), on the models analysed over training. Each statistic is positive when its
claim holds.

- C6 (Raghu et al. 2017 §4.4), per layer at the last checkpoint, for each direction but the
  random control: min(log2(D/2) - log2 k*, log2 k*_random - log2 k*).
- C6b (ours), per layer and direction: log2 k* at the compressed checkpoint nearest
  ``c6.mid`` of training minus log2 k* at the last.
- C6c (ours), per model and pruning: s* at the last compressed checkpoint minus s* at the
  first.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.claims.rows import FAIL, NA, PASS, row
from analysis.compression import OVER_TRAINING, PROJECTION, PRUNING
from analysis.settings import Claims
from analysis.steps import nearest

RANDOM = "random"


def _verdict(value: float, threshold: float) -> str:
    return NA if not np.isfinite(value) else PASS if value >= threshold else FAIL


def claim_c6(summary: pd.DataFrame, cs: Claims) -> list[dict]:
    """C6 per (model, layer) and direction at the model's last compressed checkpoint."""
    rows = []
    threshold = cs.primary["C6"].min_effect
    t = summary[(summary.role == OVER_TRAINING) & (summary.compress == PROJECTION)]
    for (model, seed, layer), g in t.groupby(["model", "seed", "layer"], sort=True):
        last = g[g.step == g.step.max()].set_index("method")
        if RANDOM not in last.index:
            continue
        dim = float(last.dim.iloc[0])
        control = float(last.star[RANDOM])
        for method, r in last.drop(index=RANDOM).iterrows():
            half, below_random = math.log2(dim / 2) - r.star, control - r.star
            value = min(half, below_random)
            rows.append(row(
                "C6", dict(model=model, seed=seed), f"layer={layer}", method,
                "min(log2(D/2) - log2 k*, log2 k*_random - log2 k*)", value, threshold,
                _verdict(value, threshold),
                f"step {int(r.step)}: k* {2 ** r.star:.3g} of {dim:g} (random {2 ** control:.3g})",
                n=1))
    return rows


def claim_c6b(summary: pd.DataFrame, cs: Claims) -> list[dict]:
    """C6b per (model, layer) and direction: log2 k* nearest ``c6.mid`` minus at the last."""
    rows = []
    threshold = cs.primary["C6b"].min_effect
    t = summary[(summary.role == OVER_TRAINING) & (summary.compress == PROJECTION)
                & (summary.method != RANDOM)]
    for (model, seed, layer, method), g in t.groupby(["model", "seed", "layer", "method"],
                                                     sort=True):
        g = g.sort_values("step")
        r = dict(model=model, seed=seed)
        mid = g.iloc[nearest(g.share, cs.c6.mid, 1.0)]
        last = g.iloc[-1]
        if mid.step == last.step:
            rows.append(row("C6b", r, f"layer={layer}", method, "log2 k*(mid) - log2 k*(last)",
                            np.nan, threshold, NA, "one compressed checkpoint"))
            continue
        value = float(mid.star - last.star)
        rows.append(row("C6b", r, f"layer={layer}", method, "log2 k*(mid) - log2 k*(last)",
                        value, threshold, _verdict(value, threshold),
                        f"k* {2 ** mid.star:.3g} at step {int(mid.step)}, "
                        f"{2 ** last.star:.3g} at {int(last.step)}", n=2))
    return rows


def claim_c6c(summary: pd.DataFrame, cs: Claims) -> list[dict]:
    """C6c per model and pruning: s* at the last compressed checkpoint minus at the first."""
    rows = []
    threshold = cs.primary["C6c"].min_effect
    t = summary[(summary.role == OVER_TRAINING) & (summary.compress == PRUNING)]
    for (model, seed, method), g in t.groupby(["model", "seed", "method"], sort=True):
        g = g.sort_values("step")
        r = dict(model=model, seed=seed)
        first, last = g.iloc[0], g.iloc[-1]
        if first.step == last.step:
            rows.append(row("C6c", r, "weights", method, "s*(last) - s*(first)", np.nan,
                            threshold, NA, "one compressed checkpoint"))
            continue
        value = float(last.star - first.star)
        rows.append(row("C6c", r, "weights", method, "s*(last) - s*(first)", value, threshold,
                        _verdict(value, threshold),
                        f"s* {first.star:.3f} at step {int(first.step)}, {last.star:.3f} at "
                        f"{int(last.step)}", n=len(g)))
    return rows


def claims_c6(summary: pd.DataFrame | None, cs: Claims) -> list[dict]:
    """C6, C6b and C6c; none without a compression summary."""
    if summary is None or summary.empty:
        return []
    return claim_c6(summary, cs) + claim_c6b(summary, cs) + claim_c6c(summary, cs)
