"""The analysis-checkpoint schedule: step 0, log-spaced early updates, evenly spaced later ones."""

from __future__ import annotations

import numpy as np


def checkpoint_schedule(max_update: int, log_points: int, linear_points: int) -> list[int]:
    """Steps at which to keep weights: 0, `log_points` log-spaced steps from 1 up to the first
    evenly spaced step, `linear_points` evenly spaced steps ending at `max_update`."""
    if max_update < 1:
        raise ValueError(f"max_update must be >= 1, got {max_update}")
    linear = np.linspace(max_update / max(linear_points, 1), max_update, max(linear_points, 1))
    first_linear = max(1.0, linear[0])
    early = np.geomspace(1, first_linear, log_points + 1)[:-1] if log_points else []
    steps = {0, max_update, *np.rint(early).astype(int), *np.rint(linear).astype(int)}
    return sorted(s for s in steps if 0 <= s <= max_update)
