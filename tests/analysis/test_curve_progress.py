"""analysis.progress: a curve as progress, and the step from which it has made a share of its
change, either way."""

import math

import numpy as np
import pytest

from analysis.progress import converged_step, crossing_step, progress_step
from analysis.progress import progress as progress_of

STEPS = np.arange(0, 11) * 100  # 0, 100, ..., 1000


def test_a_rising_curve_reaches_90_percent_where_the_formula_says():
    # linear 0 -> 1 over steps 0..1000: within 0.1 of the end from value 0.9, at step 900
    assert progress_step(STEPS, STEPS / 1000.0, 0.9) == 900.0
    # a saturating curve 1 - 2^(-k): 1 - v_k <= 0.1 * (1 - 0)? 2^-k <= 0.1 from k = 4
    k = np.arange(11)
    assert progress_step(STEPS, 1.0 - 0.5 ** k, 0.9) == pytest.approx(400.0)


def test_a_falling_curve_counts_as_progress_too():
    # 0.9 -> 0.8 linearly: |v - 0.8| <= 0.01 from step 900
    v = 0.9 - 0.1 * STEPS / 1000.0
    assert progress_step(STEPS, v, 0.9) == 900.0
    # share 0.5: within 0.05 of the end from step 500
    assert progress_step(STEPS, v, 0.5) == 500.0


def test_noise_is_smoothed_away_by_the_monotone_fit():
    # a rising line with one dip at step 900: the isotonic fit pools 800 & 900
    v = STEPS / 1000.0
    v[9] = 0.7  # a dip below step 800's 0.8; fit pools (0.8, 0.7) to 0.75 at 800 and 900
    # end value 1.0, first 0.0: needs fit >= 0.9, only step 1000 qualifies
    assert progress_step(STEPS, v, 0.9) == 1000.0
    # a late blip above the end does not make the curve "settled" early (held for good)
    # fit: 0, .1, then (1.0, .3, .4, .5) pooled to .55, then .6 ... 1.0: fit >= .9 from step 900
    v2 = STEPS / 1000.0
    v2[2] = 1.0
    assert progress_step(STEPS, v2, 0.9) == 900.0


def test_a_flat_curve_has_no_progress_step():
    assert math.isnan(progress_step(STEPS, np.full(11, 0.5), 0.9))


def test_nans_are_dropped_and_too_few_points_give_nan():
    v = STEPS / 1000.0
    v[[3, 9]] = np.nan
    # steps left: 0..200, 400..800, 1000; within 0.1 of 1.0 only from 1000 (800 has 0.8)
    assert progress_step(STEPS, v, 0.9) == 1000.0
    assert math.isnan(progress_step([0, 100], [np.nan, 1.0], 0.9))
    assert math.isnan(progress_step([], [], 0.9))


def test_unsorted_steps_are_sorted_first():
    assert progress_step(STEPS[::-1], (STEPS / 1000.0)[::-1], 0.9) == 900.0


def test_share_out_of_range_is_refused():
    with pytest.raises(ValueError):
        progress_step(STEPS, STEPS / 1000.0, 0.0)


def test_progress_is_the_share_of_a_curves_change_either_way():
    assert progress_of([0, 1, 2], [0.8, 0.9, 1.0]) == pytest.approx([0, 0.5, 1])
    assert progress_of([2, 0, 1], [0.2, 1.0, 0.6]) == pytest.approx([0, 0.5, 1])  # falls
    assert (progress_of([0, 1], [0.7, 0.7]) == 1).all()  # no change: complete from the start
    assert np.isnan(progress_of([0, 1], [np.nan, 0.7])).all()
    # a layer that keeps its init (0.92 at step 0) has converged once at 0.992 (90% of 0.08)
    steps, values = [0, 1, 2, 4], [0.92, 0.95, 0.992, 1.0]
    assert converged_step(steps, values, 0.9) == 2
    assert crossing_step(steps, values, 0.9) == 0  # the raw rule: converged at init


def test_crossing_step():
    steps, vals = [0, 1, 2, 4, 8], [0.2, 0.95, 0.7, 0.93, 1.0]
    assert crossing_step(steps, vals, 0.9, sustained=True) == 4
    assert crossing_step(steps, vals, 0.9, sustained=False) == 1
    assert np.isnan(crossing_step(steps, [0.1] * 5, 0.9))
    assert crossing_step(steps[::-1], vals[::-1], 0.9) == 4  # order independent
    assert np.isnan(crossing_step(steps, [1, 1, 1, 1, np.nan], 0.9))
