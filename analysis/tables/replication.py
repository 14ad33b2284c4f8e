"""Has each layer learned, and finished? Tests across seeds, on the seed-vs-seed table (S2)
and each seed's convergence table:

- *learned*: the final models of two seeds agree more than their initial models did, by more
  than shuffled token pairings give: per seed pair, the chance-corrected gain
  (final - its shuffled baseline) - (initial - its shuffled baseline); the layer has learned
  when the lower bound of the bootstrap interval (over seed pairs) of its mean exceeds
  ``learned.margin``.
- *finished*: the last part of training moves the layer by little next to the seeds' spread:
  mean over seeds of 1 - sim(checkpoint nearest ``learned.late``, final) <= ``epsilon`` x mean
  over seed pairs of 1 - sim(seed a final, seed b final).

A layer keeps much of its initialisation under CCA-family metrics, so "closer to another seed's
final than to its own init" is not a test of learning (S4 keeps it as a diagnostic).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.runs import stable_seed
from analysis.settings import AnalysisSettings
from analysis.steps import nearest
from analysis.tables.rows import ALL

COLUMNS = ["model", "probe", "side", "layer", "metric", "pairs", "gain", "gain_low",
           "gain_high", "learned", "late_share", "late_change", "seed_spread", "finished",
           "reason"]


def learned_test(final: np.ndarray, init: np.ndarray, final_base: np.ndarray,
                 init_base: np.ndarray, margin: float, n_boot: int, level: float,
                 seed: int) -> dict:
    """Over seed pairs: the mean chance-corrected gain of seed-vs-seed similarity from the
    initial to the final models, its percentile bootstrap interval (pairs resampled), and
    whether its lower bound exceeds ``margin``."""
    gain = ((np.asarray(final, float) - np.asarray(final_base, float))
            - (np.asarray(init, float) - np.asarray(init_base, float)))
    gain = gain[np.isfinite(gain)]
    if not len(gain):
        return dict(pairs=0, gain=np.nan, gain_low=np.nan, gain_high=np.nan, learned=None)
    rng = np.random.default_rng(seed)
    boot = gain[rng.integers(0, len(gain), size=(n_boot, len(gain)))].mean(axis=1)
    low, high = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return dict(pairs=len(gain), gain=float(gain.mean()), gain_low=float(low),
                gain_high=float(high), learned=bool(low > margin))


def finished_test(late: np.ndarray, final_pairs: np.ndarray, epsilon: float) -> dict:
    """``late``: each seed's sim(late checkpoint, final); ``final_pairs``: each seed pair's
    sim(final a, final b). Finished when the mean late change is at most ``epsilon`` times the
    mean seed spread."""
    change = 1 - np.asarray(late, dtype=float)
    spread = 1 - np.asarray(final_pairs, dtype=float)
    change, spread = change[np.isfinite(change)], spread[np.isfinite(spread)]
    if not len(change) or not len(spread):
        return dict(late_change=np.nan, seed_spread=np.nan, finished=None)
    c, s = float(change.mean()), float(spread.mean())
    return dict(late_change=c, seed_spread=s, finished=bool(c <= epsilon * s))


def _late_rows(convergence: pd.DataFrame, share: float) -> pd.DataFrame:
    """Each (model, seed, probe, side, layer, metric)'s similarity between the checkpoint
    nearest ``share`` of training and the final one (unrestricted tokens)."""
    c = convergence[(convergence.tag == ALL) & (convergence.step_a < convergence.step_b)]
    out = []
    keys = ["model", "seed", "probe", "side", "layer_a", "metric"]
    for key, g in c.groupby(keys, sort=True):
        steps = np.sort(g.step_a.unique())
        late = steps[nearest(steps, share, float(g.step_b.max()))]
        out.append(dict(zip(keys, key, strict=True), late=float(g[g.step_a == late].value.mean()),
                        late_share=float(late / g.step_b.max())))
    return pd.DataFrame(out, columns=[*keys, "late", "late_share"])


def learned_layers(seeds: pd.DataFrame, convergence: Sequence[pd.DataFrame],
                   settings: AnalysisSettings) -> pd.DataFrame:
    """One row per (model, probe, side, layer, metric in ``learned.metrics``): the learned and
    finished tests across seeds, NA (None) with the reason where a test is not possible."""
    cfg = settings.learned
    if seeds is None or not len(seeds):
        return pd.DataFrame(columns=COLUMNS)
    s = seeds[seeds.metric.isin(cfg.metrics)]
    parts = [c for c in convergence if c is not None and len(c)]
    late = _late_rows(pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["model", "seed", "probe", "side", "layer_a", "metric", "tag", "step_a",
                 "step_b", "value"]), cfg.late)
    none = late.iloc[:0]
    late_of = dict(iter(late.groupby(["model", "probe", "side", "layer_a", "metric"])))
    rows = []
    for (model, probe, side, layer, metric), g in s.groupby(
            ["model", "probe", "side", "layer", "metric"], sort=True):
        pairs = g.pivot_table(index=["seed_a", "seed_b"], columns="checkpoint",
                              values=["value", "baseline"], aggfunc="mean")
        reasons = []
        if ("value", "init") in pairs:
            test = learned_test(pairs["value"]["final"], pairs["value"]["init"],
                                pairs["baseline"]["final"], pairs["baseline"]["init"],
                                cfg.margin, cfg.n_boot, settings.claims.level,
                                stable_seed(settings.seed, model, probe, layer, metric))
        else:
            test = dict(pairs=len(pairs), gain=np.nan, gain_low=np.nan, gain_high=np.nan,
                        learned=None)
            reasons.append("no initial checkpoint extracted")
        mine = late_of.get((model, probe, side, layer, metric), none)
        done = finished_test(mine.late.to_numpy(), pairs["value"]["final"].to_numpy(),
                             cfg.epsilon)
        if not len(mine):
            reasons.append("not analysed over training")
        rows.append(dict(model=model, probe=probe, side=side, layer=layer, metric=metric,
                         **test, late_share=float(mine.late_share.mean()) if len(mine)
                         else np.nan, **done, reason="; ".join(reasons)))
    return pd.DataFrame(rows, columns=COLUMNS)


__all__ = ["COLUMNS", "finished_test", "learned_layers", "learned_test"]
