"""The concentration tables (F6, F6b): c = ||x||_2 / ||x||_1 of activations and gradients per
tag, layer and checkpoint, and the frequency-matched function - content difference."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.concentration import aggregate_by_tag, concentration, frequency_matched_difference
from analysis.runs import Probe, stable_seed, tagged_word_and_freq
from analysis.settings import AnalysisSettings
from analysis.tables.rows import ALL, base_row

METRIC = "concentration"  # the metric column of both tables: c = ||x||_2 / ||x||_1

def _groups(tags: pd.Series, settings: AnalysisSettings) -> np.ndarray:
    return np.where(tags.isin(settings.function_tags), "function",
                    np.where(tags.isin(settings.content_tags), "content", "other"))


def concentration_tables(p: Probe, settings: AnalysisSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Concentration c = ‖x‖₂/‖x‖₁ of activations (input-aligned tags) and gradients
    (target-aligned tags) per tag, layer and checkpoint (F6), and the frequency-matched
    function-minus-content difference (Saphra & Lopez 2019, Sparsity).

    Returns (per-tag table with mean/median/CI per tag and an 'all' row, function_content).
    """
    per, fc = [], []
    for side, layers in p.layers.items():
        idx = p.sample(side, settings)
        rows = p.tokens[side].iloc[idx].reset_index(drop=True)
        for kind, columns in (("act", settings.act_tag_columns),
                              ("grad", settings.grad_tag_columns)):
            column = columns.get(side, "pos")
            tags = rows[column].astype(object).where(rows[column].notna(), "none")
            _, freq = tagged_word_and_freq(p.tokens[side], column)
            freq = freq.iloc[idx].to_numpy(dtype=float)
            keep = ~tags.isin(settings.exclude_tags).to_numpy()
            groups = _groups(tags, settings)
            for depth, layer in enumerate(layers):
                for step in p.steps:
                    x = p.array(step, layer, idx, kind)
                    if x is None:
                        continue
                    # non-finite rows are left out, and counted
                    finite = np.isfinite(x).all(axis=1)
                    base = base_row(p.run, p.name, side, layer=layer, depth=depth, step=step,
                                     fraction=step / p.final, quantity=kind,
                                     tag_column=column, dim=x.shape[1],
                                     n_nonfinite=int((~finite).sum()))
                    if not finite.any():
                        fc.append({**base, "difference": np.nan, "na_reason":
                                   f"{p.where(step, layer)} {kind}: no finite row"})
                        continue
                    c = concentration(x[finite])
                    seed = stable_seed(settings.seed, p.run.name, p.name, layer, step, kind)
                    agg = aggregate_by_tag(c[keep[finite]], tags[finite][keep[finite]].to_numpy(),
                                           n_boot=settings.concentration.tag_n_boot, seed=seed,
                                           ci=settings.concentration.ci)
                    whole = aggregate_by_tag(c, np.full(len(c), ALL),
                                             n_boot=settings.concentration.tag_n_boot, seed=seed,
                                             ci=settings.concentration.ci)
                    for r in pd.concat([agg, whole]).to_dict("records"):
                        per.append({**base, **r})
                    try:
                        fm = frequency_matched_difference(
                            c, np.asarray(groups)[finite], freq[finite],
                            n_bins=settings.concentration.freq_bins,
                            order=("function", "content"), n_boot=settings.concentration.n_boot,
                            seed=seed, ci=settings.concentration.ci,
                            n_perm=settings.claims.n_permutations)
                    except ValueError as err:
                        fc.append({**base, "difference": np.nan, "na_reason": str(err),
                                   "freq_bins": settings.concentration.freq_bins})
                        continue
                    fc.append({**base, "difference": fm.difference, "ci_low": fm.ci_low,
                               "ci_high": fm.ci_high, "n_function": int(fm.bins.n_a.sum()),
                               "n_content": int(fm.bins.n_b.sum()), "n_bins": len(fm.bins),
                               "freq_bins": settings.concentration.freq_bins,
                               "p_value": fm.p_value, "na_reason": None})
    per_t, fc_t = pd.DataFrame(per), pd.DataFrame(fc)
    for t in (per_t, fc_t):
        if not t.empty:
            t.insert(0, "metric", METRIC)
    return per_t, fc_t

