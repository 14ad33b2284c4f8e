"""Properties of analysis.concentration (expectations derived from the definitions)."""

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from analysis.concentration import (
    aggregate_by_tag,
    concentration,
    frequency_matched_difference,
    nan_count,
)

FAST = settings(max_examples=30, deadline=None)
vectors = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 20), st.integers(1, 30)),
    elements=st.floats(-1e30, 1e30, allow_nan=False, allow_subnormal=False),
)


@FAST
@given(x=vectors)
def test_bounds_and_zero_vectors(x):
    c = concentration(x)
    d = x.shape[1]
    zero = ~x.any(axis=1)
    assert c.shape == (x.shape[0],)
    assert nan_count(c) == zero.sum()
    assert np.all(np.isnan(c[zero]))
    live = c[~zero]
    assert np.all(live >= 1 / np.sqrt(d) * (1 - 1e-12)) and np.all(live <= 1 + 1e-12)


@FAST
@given(x=vectors, scale=st.floats(1e-6, 1e6))
def test_scale_invariant(x, scale):
    np.testing.assert_allclose(concentration(scale * x), concentration(x), rtol=1e-12)


@pytest.mark.parametrize("d", [1, 2, 7, 512])
def test_extremes(d):
    rng = np.random.default_rng(d)
    one_hot = np.zeros((3, d))
    one_hot[np.arange(3), rng.integers(0, d, 3)] = rng.normal(size=3) * 100
    np.testing.assert_allclose(concentration(one_hot), 1.0, rtol=1e-14)
    flat = 3.5 * rng.choice([-1.0, 1.0], size=(4, d))
    np.testing.assert_allclose(concentration(flat), 1 / np.sqrt(d), rtol=1e-14)
    if d > 1:
        np.testing.assert_allclose(concentration(one_hot, normalize="hoyer"), 1.0, atol=1e-12)
        np.testing.assert_allclose(concentration(flat, normalize="hoyer"), 0.0, atol=1e-12)


@FAST
@given(x=vectors.filter(lambda a: a.shape[1] > 1))
def test_hoyer_in_unit_interval(x):
    h = concentration(x, normalize="hoyer")
    live = h[~np.isnan(h)]
    assert np.all((live >= -1e-9) & (live <= 1 + 1e-9))
    assert nan_count(h) == (~x.any(axis=1)).sum()


def test_float16_large_values_do_not_overflow():
    x16 = torch.full((2, 100_000), 300.0, dtype=torch.float16)
    assert torch.isinf(torch.linalg.vector_norm(x16, ord=1, dim=-1)).all()  # the naive trap
    expected = 1 / np.sqrt(100_000)
    np.testing.assert_allclose(concentration(x16), expected, rtol=1e-12)
    np.testing.assert_allclose(concentration(x16.numpy()), expected, rtol=1e-12)


def test_torch_matches_numpy_and_keeps_leading_axes():
    x = np.random.default_rng(0).standard_normal((2, 3, 16))
    np.testing.assert_allclose(concentration(torch.from_numpy(x)), concentration(x), rtol=1e-14)
    assert concentration(x).shape == (2, 3)
    assert nan_count(torch.tensor([1.0, float("nan")])) == 1


def test_invalid_input():
    with pytest.raises(ValueError, match="NaN or inf"):
        concentration(np.array([[1.0, np.inf]]))
    with pytest.raises(ValueError, match="NaN or inf"):
        concentration(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="hoyer"):
        concentration(np.ones((2, 3)), normalize="l0")
    with pytest.raises(ValueError, match="2 dims"):
        concentration(np.ones((2, 1)), normalize="hoyer")


# --------------------------------------------------------------------------- per-tag summaries


def test_aggregate_by_tag_statistics():
    rng = np.random.default_rng(1)
    tags = rng.choice(["NN", "DT", "VB"], size=3000, p=[0.5, 0.3, 0.2])
    values = rng.normal(0.3, 0.05, size=3000) + (tags == "DT") * 0.1
    values[rng.choice(3000, 40, replace=False)] = np.nan
    table = aggregate_by_tag(values, tags, n_boot=2000, seed=0)
    assert list(table.columns) == [
        "tag",
        "mean",
        "median",
        "ci_low",
        "ci_high",
        "n_tokens",
        "n_nan",
    ]
    assert list(table["tag"]) == ["DT", "NN", "VB"]
    for row in table.itertuples():
        v = values[tags == row.tag]
        finite = v[~np.isnan(v)]
        assert row.n_tokens == v.size and row.n_nan == np.isnan(v).sum()
        assert row.mean == pytest.approx(finite.mean(), abs=1e-12)
        assert row.median == pytest.approx(np.median(finite), abs=1e-12)
        half_width = 1.96 * finite.std() / np.sqrt(finite.size)  # normal-theory 95% CI
        assert row.ci_low < row.mean < row.ci_high
        assert (row.ci_high - row.ci_low) / 2 == pytest.approx(half_width, rel=0.1)
    again = aggregate_by_tag(values, tags, n_boot=2000, seed=0)
    pd.testing.assert_frame_equal(table, again)


def test_aggregate_edge_cases():
    table = aggregate_by_tag(np.array([2.0, 2.0, np.nan, np.nan]), ["a", "a", "b", "b"])
    a, b = table.iloc[0], table.iloc[1]
    assert (a["mean"], a["ci_low"], a["ci_high"], a["n_nan"]) == (2.0, 2.0, 2.0, 0)
    assert np.isnan(b["mean"]) and b["n_tokens"] == 2 and b["n_nan"] == 2
    no_boot = aggregate_by_tag(np.array([1.0, 3.0]), ["x", "x"], n_boot=0)
    assert no_boot["mean"].iloc[0] == 2.0 and np.isnan(no_boot["ci_low"].iloc[0])
    with pytest.raises(ValueError, match="shape"):
        aggregate_by_tag(np.ones(3), ["a", "b"])


# --------------------------------------------------------------------------- frequency matching


def test_frequency_matched_weights_by_hand():
    """Two frequency levels, one bin each; per-bin differences 1 and 3."""
    freq = np.r_[[10.0] * 5, [1000.0] * 5]
    group = np.array([True] * 4 + [False] + [True] * 2 + [False] * 3)
    values = np.r_[[1.0] * 4, 0.0, [5.0] * 2, [2.0] * 3]
    expected = {"harmonic": (0.8 * 1 + 1.2 * 3) / 2.0, "tokens": 2.0, "first": 10 / 6}
    for weight, value in expected.items():
        res = frequency_matched_difference(values, group, freq, n_bins=2, weight=weight)
        assert res.difference == pytest.approx(value, abs=1e-12)
        assert res.ci_low == pytest.approx(value) and res.ci_high == pytest.approx(value)
        assert list(res.bins["n_a"]) == [4, 2] and list(res.bins["n_b"]) == [1, 3]
        assert list(res.bins["diff"]) == [1.0, 3.0] and res.n_dropped == 0
    labels = np.where(group, "function", "content")
    flipped = frequency_matched_difference(values, labels, freq, n_bins=2, n_boot=0)
    assert flipped.groups == ("content", "function")  # sorted labels
    assert flipped.difference == pytest.approx(-expected["harmonic"], abs=1e-12)


@pytest.mark.parametrize("effect", [0.0, 0.3])
def test_frequency_matching_removes_confound(effect):
    """value = 0.5 log f (+ effect in group a); group a is frequent, group b rare."""
    rng = np.random.default_rng(2)
    n = 20_000
    group = rng.random(n) < 0.5
    logf = np.where(group, rng.uniform(2, 10, n), rng.uniform(0, 6, n))
    values = 0.5 * logf + effect * group + rng.normal(0, 0.5, n)
    naive = values[group].mean() - values[~group].mean()
    assert naive > 1.0 + effect  # the raw comparison is dominated by frequency
    res = frequency_matched_difference(values, group, np.exp(logf), n_bins=40, n_boot=300)
    se = (res.ci_high - res.ci_low) / (2 * 1.96)
    assert abs(res.difference - effect) < 4 * se
    assert se < 0.02
    assert res.bins["freq_low"].min() >= np.exp(2) * (1 - 1e-9)  # only the shared range
    assert res.bins["freq_high"].max() <= np.exp(6) * (1 + 1e-9)


def test_frequency_matched_errors_and_nans():
    freq = np.array([1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="two groups"):
        frequency_matched_difference(np.ones(4), np.array(["a", "b", "c", "a"]), freq)
    with pytest.raises(ValueError, match="share no"):
        frequency_matched_difference(np.ones(4), np.array([True, True, False, False]), freq)
    values = np.array([1.0, np.nan, 2.0, 0.5, 1.5, 1.0])
    group = np.array([True, True, True, False, False, False])
    res = frequency_matched_difference(values, group, np.ones(6), n_bins=3, n_boot=0)
    assert res.difference == pytest.approx(1.5 - 1.0) and res.n_dropped == 1
