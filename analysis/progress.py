"""When a training curve has made a given share of its change, in either direction.

Progress is (v_t - v_0) / (v_T - v_0), the share of a curve's total change made by step t
(for similarity to the final state, (s_t - s_0) / (1 - s_0)), so that where a curve starts (a
layer that keeps its initialisation, a metric with a high floor) does not decide when it has
converged. ``converged_step`` reads it raw (C1, C2, C2b: the first step from which progress
stays above a threshold); ``progress_step`` on a monotone fit (C5).

For ``progress_step`` a curve is first made monotone (scipy's isotonic regression, increasing
or decreasing by the sign of its end minus its start) so that noise cannot delay or advance the
step; the progress step is the first step from which the smoothed curve stays within
(1 - share) of its total change of its end value. Pure numpy/scipy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import isotonic_regression


def monotone_fit(values: ArrayLike, increasing: bool) -> np.ndarray:
    """The least-squares monotone curve (isotonic regression) through ``values``."""
    return isotonic_regression(np.asarray(values, dtype=float), increasing=increasing).x


def progress_step(steps: ArrayLike, values: ArrayLike, share: float) -> float:
    """First step from which the monotone-smoothed curve stays within
    ``(1 - share) * |v_T - v_first|`` of its end value v_T (v_first, v_T: the smoothed curve's
    first and last values).

    Works for rising and falling curves alike. Points whose value is NaN are dropped. A curve with
    fewer than two finite points, or with no change (v_T == v_first after smoothing: a flat curve),
    has no progress step: NaN is returned, not the first step, since nothing was learned.
    """
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share}")
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    if s.shape != v.shape or s.ndim != 1:
        raise ValueError("steps and values must be 1-d arrays of the same length")
    keep = np.isfinite(v) & np.isfinite(s)
    s, v = s[keep], v[keep]
    if len(s) < 2:
        return float("nan")
    order = np.argsort(s, kind="stable")
    s, v = s[order], v[order]
    fit = monotone_fit(v, increasing=bool(v[-1] >= v[0]))
    change = abs(fit[-1] - fit[0])
    if not change > 0.0:
        return float("nan")
    # tolerance relative to the change so that an exact 90% point on a float grid counts as reached
    within = np.abs(fit - fit[-1]) <= (1.0 - share) * change * (1.0 + 1e-9)
    outside = np.flatnonzero(~within)
    first = 0 if len(outside) == 0 else outside[-1] + 1  # held for good from here on
    return float(s[first])


def crossing_step(steps: Sequence[float], values: Sequence[float], threshold: float,
                  sustained: bool = True) -> float:
    """The first step whose value is >= ``threshold`` (with ``sustained``: and stays so at
    every later step); NaN if there is none. NaN values count as below the threshold."""
    order = np.argsort(np.asarray(steps, dtype=float))
    s = np.asarray(steps, dtype=float)[order]
    above = np.nan_to_num(np.asarray(values, dtype=float)[order], nan=-np.inf) >= threshold
    if not above.any():
        return float("nan")
    if not sustained:
        return float(s[np.argmax(above)])
    if not above[-1]:
        return float("nan")
    below = np.flatnonzero(~above)
    return float(s[0] if below.size == 0 else s[below[-1] + 1])


def progress(steps: Sequence[float], values: Sequence[float]) -> np.ndarray:
    """A curve as progress, in step order: (v_t - v_0) / (v_T - v_0), the share of its total
    change made by step t (for similarity to the final state, (s_t - s_0) / (1 - s_0)). A curve
    that does not change (|v_T - v_0| below 1e-12 of its scale) is complete from its first step;
    NaN stays NaN."""
    order = np.argsort(np.asarray(steps, dtype=float), kind="stable")
    v = np.asarray(values, dtype=float)[order]
    change = v[-1] - v[0]
    if not np.isfinite(change):
        return np.full(v.shape, np.nan)
    if abs(change) <= 1e-12 * max(1.0, float(np.nanmax(np.abs(v)))):
        return np.ones_like(v)
    return (v - v[0]) / change


def converged_step(steps: Sequence[float], values: Sequence[float], threshold: float) -> float:
    """The first step from which a curve's progress stays >= ``threshold`` (NaN for a curve
    with a NaN at its ends); a point exactly at the threshold counts, whatever its rounding."""
    s = np.sort(np.asarray(steps, dtype=float))
    return crossing_step(s, progress(steps, values), threshold * (1 - 1e-9), sustained=True)
