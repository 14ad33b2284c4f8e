"""Has a model learned? The criteria fixed in config (analysis.learned) before any result,
checked on its checkpoints table (validation perplexity over training) and final evaluation:

- a plateau: validation perplexity over the last ``window`` of updates improves by less than
  ``max_gain`` (its relative drop from the checkpoint nearest the window's start to the end),
  for models evaluated by perplexity or accuracy (LMs and taggers);
- at least ``min_epochs`` passes over the training data, for LMs (evaluated by perplexity);
- above the majority-class baseline on held-out data, for taggers;
- a metric that must have stopped rising (BLEU for NMT): at most ``max_rise`` above its value
  at the earlier evaluation.

Beside the verdict, the endpoint of an annealed schedule (``endpoint``): the last learning
rate as a share of its peak, and the change of validation loss over the last updates.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from analysis.settings import Learned
from analysis.steps import nearest


def plateau_gain(checkpoints: pd.DataFrame, window: float) -> float:
    """Relative improvement of validation perplexity over the last ``window`` of updates."""
    c = checkpoints.dropna(subset=["valid_ppl"]).sort_values("step")
    if len(c) < 2:
        return float("nan")
    start = c.iloc[nearest(c.step, 1 - window, c.step.max())]
    return float((start.valid_ppl - c.valid_ppl.iloc[-1]) / start.valid_ppl)


def endpoint(checkpoints: pd.DataFrame, criteria: Learned) -> dict:
    """The schedule's endpoint: the last learning rate as a share of its peak (``lr_share``)
    and the relative change of validation loss over the last ``late_window`` of updates
    (``late_loss_change``), each with whether it meets its limit (None: not measurable,
    e.g. a model trained before learning rates were recorded)."""
    c = checkpoints.sort_values("step")
    lr = c["lr"].astype(float) if "lr" in c else pd.Series(np.nan, index=c.index)
    share = float(lr.iloc[-1] / lr.max()) if lr.notna().any() and lr.max() > 0 else np.nan
    v = c.dropna(subset=["valid_loss"])
    change = np.nan
    if len(v) >= 2:
        start = v.iloc[nearest(v.step, 1 - criteria.late_window, v.step.max())]
        change = float(abs(v.valid_loss.iloc[-1] - start.valid_loss) / abs(start.valid_loss))
    return {"lr_share": share,
            "endpoint_lr": bool(share <= criteria.max_final_lr_share)
            if np.isfinite(share) else None,
            "late_loss_change": change,
            "endpoint_loss": bool(change < criteria.max_loss_change)
            if np.isfinite(change) else None}


def late_cka(convergence: pd.DataFrame | None, model: str, criteria: Learned) -> dict:
    """The representations' endpoint: the lowest CKA over layers between the checkpoint
    nearest ``late`` of training and the last (``late_cka_min``, at ``late_step_share`` of
    training), and whether it reaches ``min_late_cka``; NaN and None for a model with one
    checkpoint analysed (a tagger with only its last extracted) or without CKA."""
    if convergence is None or not len(convergence):
        convergence = pd.DataFrame(columns=["model", "metric", "step_a", "step_b"])
    c = convergence[(convergence.model == model) & (convergence.metric == "cka")]
    final = c.step_b.max() if len(c) else np.nan
    steps = np.sort(c.step_a[c.step_a < final].unique())  # the late one is not the last
    if not len(steps):
        return {"late_cka_min": np.nan, "late_step_share": np.nan, "endpoint_cka": None}
    late = steps[nearest(steps, criteria.late, final)]
    low = float(c[c.step_a == late].value.min())
    return {"late_cka_min": low, "late_step_share": float(late / final),
            "endpoint_cka": bool(low >= criteria.min_late_cka)}


def learned(checkpoints: pd.DataFrame, metrics: Mapping, criteria: Learned) -> dict:
    """The verdict (``learned``), each criterion's number and a one-line reason."""
    out: dict = {}
    failed = []
    if "test_ppl" in metrics or "test_accuracy" in metrics:
        gain = plateau_gain(checkpoints, criteria.window)
        out["plateau_gain"] = gain
        if not gain < criteria.max_gain:
            failed.append(f"valid ppl still improving {gain:.1%} over the last "
                          f"{criteria.window:.0%} of updates (plateau: < {criteria.max_gain:.0%})")
    if "test_ppl" in metrics:
        epochs = float(checkpoints.epochs.max()) if "epochs" in checkpoints else np.nan
        if not epochs >= criteria.min_epochs:
            failed.append(f"{epochs:.2f} epochs < {criteria.min_epochs}")
    if "test_accuracy" in metrics:
        if not metrics["test_accuracy"] > metrics["majority_baseline"]:
            failed.append(f"accuracy {metrics['test_accuracy']:.3f} <= majority "
                          f"{metrics['majority_baseline']:.3f}")
    for key, value in metrics.items():
        if key.endswith("_earlier"):
            metric = key[: -len("_earlier")]
            rise = float(metrics[metric] - value)
            out[f"{metric}_rise"] = rise
            if not rise < criteria.max_rise:
                failed.append(f"{metric} still rising: +{rise:.2f} since step "
                              f"{metrics.get('earlier_step')} (limit {criteria.max_rise})")
    measured = bool(metrics) or checkpoints.valid_loss.notna().any()
    out["learned"] = (not failed) if measured else None  # an external series: no evaluation
    out["not_learned_because"] = "; ".join(failed) if measured else "not evaluated here"
    return out
