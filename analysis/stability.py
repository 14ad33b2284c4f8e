"""Instability (Frankle et al., ICML 2020) from the values measured along the line between two
children of W_k: the barrier, the largest amount by which a point on the line is worse than the
mean of the two ends, and the first rewind point from which every later one is stable. Pure
numpy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def barrier(alphas: Sequence[float], values: Sequence[float], higher_better: bool
            ) -> tuple[float, float]:
    """(barrier, α where it is largest) of a path: max over α of value(α) minus the mean of
    the ends (α = 0 and 1) for a loss, the mean of the ends minus value(α) for a quality
    where higher is better. Never below the ends' half-difference, so never negative; 0 for
    a flat path."""
    a = np.asarray(alphas, dtype=float)
    v = np.asarray(values, dtype=float)
    if a.shape != v.shape or len(a) < 2:
        raise ValueError(f"a path needs at least two points of (alpha, value), got {a.shape}, "
                         f"{v.shape}")
    order = np.argsort(a, kind="stable")
    a, v = a[order], v[order]
    if a[0] != 0.0 or a[-1] != 1.0:
        raise ValueError(f"a path runs from alpha 0 to 1, got {a[0]:g} to {a[-1]:g}")
    ends = (v[0] + v[-1]) / 2
    worse = ends - v if higher_better else v - ends
    i = int(np.argmax(worse))
    return float(worse[i]), float(a[i])


def relative(value: float, ends: float) -> float:
    """A barrier as a share of the mean of the ends (NaN where that mean is 0)."""
    return float(value / abs(ends)) if ends else float("nan")


def first_stable(steps: Sequence[float], stable: Sequence[bool]) -> float:
    """The first rewind step from which every later rewind point is stable; NaN when the
    last one is not (never stable on the grid)."""
    s = np.asarray(steps, dtype=float)
    ok = np.asarray(stable, dtype=bool)
    order = np.argsort(s, kind="stable")
    s, ok = s[order], ok[order]
    if not len(s) or not ok[-1]:
        return float("nan")
    unstable = np.flatnonzero(~ok)
    return float(s[unstable[-1] + 1] if len(unstable) else s[0])
