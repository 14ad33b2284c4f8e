"""Claim C5, NMT's training stages, per (model, seed, set) of the ``nmt_stages`` table.

"C5" reads the stages as Voita, Sennrich & Titov (EMNLP 2021) measured them: the score of the
translations under target-side n-gram LMs peaks, then lexical translation (teacher-forced token
accuracy, or BLEU) makes its change, then reordering (the fuzzy reordering score of the
source-output alignment) does. "C5 KL (Chang & Bergen)" puts the step of the smallest
teacher-forced KL to an n-gram LM (Chang & Bergen, TACL 2022) in place of the LM-score peak.
Lexical translation and reordering are read only once the outputs are translations (from the
first checkpoint whose BLEU reaches a threshold), as progress in either direction
(analysis.progress). Each unit gives one row per claim; the test across seeds is not here.
Pure pandas/numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from analysis.claims.rows import FAIL, NA, PASS, fmt, row
from analysis.progress import progress_step
from analysis.settings import Claims
from analysis.tables import registry as T

VOITA, CHANG_BERGEN = "C5", "C5 KL (Chang & Bergen)"
REORDERING = "fuzzy_reordering"
STATISTIC = {VOITA: "min(lexical - LM-score peak, reordering - lexical) / steps",
             CHANG_BERGEN: "min(lexical - KL minimum, reordering - lexical) / steps"}


def _curve(unit: pd.DataFrame, measure: str) -> tuple[np.ndarray, np.ndarray]:
    """A measure's finite (steps, values), by step."""
    c = unit[unit.measure == measure].sort_values("step")
    keep = np.isfinite(c.value.to_numpy(dtype=float))
    return c.step.to_numpy(dtype=float)[keep], c.value.to_numpy(dtype=float)[keep]


def _extreme_step(unit: pd.DataFrame, measure: str, largest: bool) -> float:
    steps, values = _curve(unit, measure)
    if not len(values):
        return np.nan
    return float(steps[int(np.argmax(values) if largest else np.argmin(values))])


def translation_start(bleu: pd.DataFrame, threshold: float) -> float:
    """The first step whose BLEU (rows step, value) reaches ``threshold``; NaN if none does."""
    b = bleu.sort_values("step")
    reached = b.step[b.value.to_numpy(dtype=float) >= threshold]
    return float(reached.iloc[0]) if len(reached) else np.nan


def stage_steps(unit: pd.DataFrame, start: float, c5: Any) -> dict[str, float]:
    """One unit's stage steps from its curves (rows step, measure, value of one model, seed
    and set): ``lm_<k>`` the peak of each order's LM score and ``lm_peak`` the latest of
    ``c5.lm_orders``', ``kl_min`` the smallest KL to the ``c5.kl_order``-gram LM (both over
    every checkpoint); from ``start`` on, ``lexical`` and ``reordering`` the steps at which
    ``c5.lexical`` and the fuzzy reordering score have made ``c5.share`` of their change
    (NaN where undefined)."""
    out = {f"lm_{k}": _extreme_step(unit, f"lm_{k}", largest=True) for k in c5.lm_orders}
    peaks = [out[f"lm_{k}"] for k in c5.lm_orders]
    out["lm_peak"] = float(max(peaks)) if peaks and np.all(np.isfinite(peaks)) else np.nan
    out["kl_min"] = _extreme_step(unit, f"kl_{c5.kl_order}", largest=False)
    for stage, measure in (("lexical", c5.lexical), ("reordering", REORDERING)):
        steps, values = _curve(unit, measure)
        after = steps >= start if np.isfinite(start) else np.zeros(len(steps), bool)
        out[stage] = progress_step(steps[after], values[after], c5.share)
    return out


def stage_gap(first: float, lexical: float, reordering: float, last: float) -> float:
    """min(lexical - first, reordering - lexical) / last: positive when the three stages come
    in order, NaN when one is undefined."""
    return float(np.minimum(lexical - first, reordering - lexical) / last)


def _change(unit: pd.DataFrame, measure: str, start: float) -> str:
    steps, values = _curve(unit, measure)
    values = values[steps >= start] if np.isfinite(start) else values[:0]
    return f"{values[0]:.3g} -> {values[-1]:.3g}" if len(values) else "none"


def _undefined(c5: Any, start: float, steps: Mapping[str, float], first: str,
               max_bleu: float) -> str:
    """Why a unit's statistic is undefined."""
    if not np.isfinite(start):
        return (f"undefined: BLEU on {c5.bleu_set} never reaches {c5.bleu_threshold:g} "
                f"(at most {fmt(max_bleu)}): the outputs are never translations")
    names = {"lm_peak": f"the LM-score peak (orders {list(c5.lm_orders)})",
             "kl_min": f"the KL minimum ({c5.kl_order}-gram)",
             "lexical": f"{c5.lexical}'s progress", "reordering": "the reordering progress"}
    missing = [names[s] for s in (first, "lexical", "reordering") if not np.isfinite(steps[s])]
    return (f"undefined: {', '.join(missing)} (no such measure, fewer than two checkpoints "
            f"from step {start:g} on, or no change there)")


def claim_c5(tables: Mapping[str, pd.DataFrame], cs: Claims) -> list[dict]:
    """C5 and its Chang & Bergen reading per (model, seed, set) of the ``nmt_stages`` table:
    the stage gap (:func:`stage_gap`) as ``value``, PASS at C5's smallest effect of interest;
    NA, with the reason in ``detail``, where it is undefined. No p or CI per unit (the seeds
    test it)."""
    curves = tables.get(T.NMT_STAGES)
    if curves is None or curves.empty:
        return []
    c5 = cs.c5
    threshold = cs.primary[VOITA].min_effect
    rows = []
    for key, unit in curves.groupby(["model", "seed", "set"], sort=True):
        unit_key = dict(zip(["model", "seed", "probe"], key, strict=True))
        model_seed = curves[(curves.model == key[0]) & (curves.seed == key[1])]
        bleu = model_seed[(model_seed.set == c5.bleu_set) & (model_seed.measure == "bleu")]
        start = translation_start(bleu, c5.bleu_threshold) if len(bleu) else np.nan
        max_bleu = float(bleu.value.max()) if len(bleu) else np.nan
        steps = stage_steps(unit, start, c5)
        last = float(unit.step.max())
        aligner = ",".join(sorted(set(unit.aligner.dropna()) - {""})) if "aligner" in unit \
            else ""
        scope = f"set={key[2]}" + ("" if aligner in ("eflomal", "") else f", aligner={aligner}")
        n = int(unit.sentences.max()) if "sentences" in unit else 0
        common = (f"the outputs are translations (BLEU on {c5.bleu_set} >= "
                  f"{c5.bleu_threshold:g}) from step {fmt(start)}; {c5.lexical} "
                  f"({_change(unit, c5.lexical, start)}) made {c5.share:g} of its change at "
                  f"{fmt(steps['lexical'])}, fuzzy "
                  f"reordering [{aligner or '?'}] ({_change(unit, REORDERING, start)}) at "
                  f"{fmt(steps['reordering'])}; last step {last:g}")
        peaks = ", ".join(f"{k}-gram {fmt(steps[f'lm_{k}'])}" for k in c5.lm_orders)
        for claim, first, head in (
                (VOITA, "lm_peak", f"LM score of the translations peaks at "
                                   f"{fmt(steps['lm_peak'])} ({peaks})"),
                (CHANG_BERGEN, "kl_min", f"teacher-forced KL to the {c5.kl_order}-gram LM "
                                         f"smallest at {fmt(steps['kl_min'])}")):
            value = stage_gap(steps[first], steps["lexical"], steps["reordering"], last)
            if not np.isfinite(value):
                why = _undefined(c5, start, steps, first, max_bleu)
                rows.append(row(claim, unit_key, scope, T.NMT_STAGES, STATISTIC[claim],
                                np.nan, threshold, NA, f"{head}; {common}: {why}", n=n))
                continue
            rows.append(row(claim, unit_key, scope, T.NMT_STAGES, STATISTIC[claim], value,
                            threshold, PASS if value >= threshold else FAIL,
                            f"{head}; {common}", n=n))
    return rows


__all__ = ["CHANG_BERGEN", "REORDERING", "VOITA", "claim_c5", "stage_gap", "stage_steps",
           "translation_start"]
