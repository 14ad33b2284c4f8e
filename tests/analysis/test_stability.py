"""analysis.stability: the barrier of a path, relative to its ends, and the first rewind point
from which every later one is stable."""

import math

import pytest

from analysis.stability import barrier, first_stable, relative


def test_the_barrier_is_the_largest_rise_over_the_mean_of_the_ends():
    assert barrier([0, 0.5, 1], [2.0, 5.0, 4.0], False) == (2.0, 0.5)  # 5 - (2 + 4) / 2
    # a straight line between unequal ends: its half-difference, at the worse end
    assert barrier([0, 0.5, 1], [2.0, 3.0, 4.0], False) == (1.0, 1.0)
    assert barrier([1, 0, 0.5], [4.0, 2.0, 5.0], False) == (2.0, 0.5)  # any order
    assert barrier([0, 0.5, 1], [30.0, 20.0, 30.0], True) == (10.0, 0.5)  # BLEU drops
    with pytest.raises(ValueError, match="from alpha 0 to 1"):
        barrier([0, 0.5], [1.0, 2.0], False)


def test_relative_to_the_ends():
    assert relative(0.5, 5.0) == 0.1 and math.isnan(relative(1.0, 0.0))


def test_the_first_stable_point_is_followed_only_by_stable_ones():
    assert first_stable([0, 10, 20, 40], [True, True, True, True]) == 0
    assert first_stable([0, 10, 20, 40], [False, True, False, True]) == 40
    assert first_stable([40, 0, 20, 10], [True, False, True, True]) == 10  # any order
    assert math.isnan(first_stable([0, 10], [True, False]))
    assert math.isnan(first_stable([], []))
