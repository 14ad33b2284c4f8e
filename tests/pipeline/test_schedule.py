"""The checkpoint schedule: step 0, dense early, evenly spaced later, the last update."""

import numpy as np
import pytest

from pipeline.schedule import checkpoint_schedule


@pytest.mark.parametrize("max_update,n_log,n_lin", [(1200, 12, 12), (30, 4, 3), (7, 12, 12),
                                                    (60000, 16, 24), (1, 3, 3)])
def test_schedule_shape(max_update, n_log, n_lin):
    steps = checkpoint_schedule(max_update, n_log, n_lin)
    assert steps[0] == 0 and steps[-1] == max_update
    assert steps == sorted(set(steps)) and all(0 <= s <= max_update for s in steps)
    assert len(steps) <= 1 + n_log + n_lin


def test_early_steps_are_log_spaced_and_late_ones_even():
    steps = checkpoint_schedule(1200, 12, 12)
    assert steps[:4] == [0, 1, 2, 3]
    late = [s for s in steps if s >= 100]
    assert late == list(range(100, 1201, 100))
    early = np.array([s for s in steps if 0 < s < 100], dtype=float)
    ratios = early[1:] / early[:-1]
    assert len(early) >= 9 and ratios.max() < 2.1  # roughly geometric, no big gaps


def test_bad_max_update():
    with pytest.raises(ValueError):
        checkpoint_schedule(0, 3, 3)
