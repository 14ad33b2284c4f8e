"""Checkpoint steps: which stored step stands for a share of training. Kept apart from the
analysis settings so that the extract stage, which uses it, does not rerun when they change."""

from __future__ import annotations

import numpy as np


def nearest(steps, share: float, final: float) -> int:
    """Of ``steps`` (an array or Series), the position of the one nearest ``share`` of
    ``final``."""
    return int(np.abs(np.asarray(steps, dtype=float) - share * final).argmin())
