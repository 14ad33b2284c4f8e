"""When a training curve has made a given share of its change, in either direction.

A curve is first made monotone (scipy's isotonic regression, increasing or decreasing by the sign
of its end minus its start) so that noise cannot delay or advance the step; the progress step is
the first step from which the smoothed curve stays within (1 - share) of its total change of its
end value. Pure numpy/scipy; used by the C5 claim and reusable by any other claim.
"""

from __future__ import annotations

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
