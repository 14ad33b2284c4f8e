"""The concentration tables (F6, F6b): c = ||x||_2 / ||x||_1 of activations and gradients per
tag, layer and checkpoint, and the frequency-matched function - content difference."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.concentration import aggregate_by_tag, concentration, frequency_matched_difference
from analysis.runs import Probe, stable_seed, tagged_word_and_freq
from analysis.settings import AnalysisSettings
from analysis.tables.rows import ALL, base_row
from analysis.word_classes import is_twelve_tag, token_upos, word_class

METRIC = "concentration"  # the metric column of both tables: c = ||x||_2 / ||x||_1


def function_content_classes(tokens: pd.DataFrame, tag_column: str,
                             settings: AnalysisSettings) -> tuple[np.ndarray, np.ndarray, str]:
    """Per token of a (probe, side) table: function/content/other from the UPOS aligned like
    ``tag_column`` (of the token predicted for ``*_target``), the word type that class belongs
    to, and the column the classes came from (upos, upos_target, or Brown's xpos mapped)."""
    target = tag_column.endswith("_target")
    classes = word_class(token_upos(tokens, target), settings.function_tags,
                         settings.content_tags)
    word, _ = tagged_word_and_freq(tokens, tag_column)
    source = ("xpos" if is_twelve_tag(pd.concat([tokens.upos, tokens.upos_target]))
              else "upos") + ("_target" if target else "")
    return classes, word.to_numpy(dtype=object), source


def concentration_tables(p: Probe, settings: AnalysisSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Concentration c = ‖x‖₂/‖x‖₁ of activations (input-aligned tags) and gradients
    (target-aligned tags) per tag, layer and checkpoint (F6), and the frequency-matched
    function-minus-content difference (Saphra & Lopez 2019, Sparsity) with a word-type-level
    bootstrap CI and permutation p (:func:`function_content_classes`: classes and types).

    Returns (per-tag table with mean/median/CI per tag and an 'all' row, function_content:
    n_function/n_content count tokens, types_function/types_content word types, and
    function_mean/content_mean the bin-weighted means whose gap is the difference).
    """
    per, fc = [], []
    cs = settings.concentration
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
            classes, types, class_column = function_content_classes(p.tokens[side], column,
                                                                    settings)
            classes, types = classes[idx], types[idx]
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
                    test = {"class_column": class_column, "unit": "type",
                            "freq_bins": cs.freq_bins, "min_types": cs.min_types,
                            "n_perm": cs.n_perm}
                    try:
                        fm = frequency_matched_difference(
                            c, classes[finite], freq[finite], types=types[finite],
                            n_bins=cs.freq_bins, min_count=cs.min_types,
                            order=("function", "content"), n_boot=cs.n_boot, seed=seed,
                            ci=cs.ci, n_perm=cs.n_perm)
                    except ValueError as err:
                        fc.append({**base, **test, "difference": np.nan, "na_reason": str(err)})
                        continue
                    w = fm.bins.weight / fm.bins.weight.sum()  # difference = the two means' gap
                    fc.append({**base, **test, "difference": fm.difference, "ci_low": fm.ci_low,
                               "ci_high": fm.ci_high, "p_value": fm.p_value,
                               "function_mean": float((w * fm.bins.mean_a).sum()),
                               "content_mean": float((w * fm.bins.mean_b).sum()),
                               "n_function": int(fm.bins.n_a.sum()),
                               "n_content": int(fm.bins.n_b.sum()),
                               "types_function": int(fm.bins.k_a.sum()),
                               "types_content": int(fm.bins.k_b.sum()), "n_bins": len(fm.bins),
                               "na_reason": None})
    per_t, fc_t = pd.DataFrame(per), pd.DataFrame(fc)
    for t in (per_t, fc_t):
        if not t.empty:
            t.insert(0, "metric", METRIC)
    return per_t, fc_t

