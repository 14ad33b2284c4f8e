"""Properties of analysis.concentration (expectations derived from the definitions)."""

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from analysis.concentration import (
    _merge_bins,
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
    expected = {"harmonic": (0.8 * 1 + 1.2 * 3) / 2.0, "units": 2.0, "first": 10 / 6}
    for weight, value in expected.items():
        res = frequency_matched_difference(values, group, freq, n_bins=2, weight=weight)
        assert res.difference == pytest.approx(value, abs=1e-12)
        assert res.ci_low == pytest.approx(value) and res.ci_high == pytest.approx(value)
        assert list(res.bins["n_a"]) == [4, 2] and list(res.bins["n_b"]) == [1, 3]
        assert list(res.bins["diff"]) == [1.0, 3.0] and res.n_dropped == 0
        assert res.unit == "token" and list(res.bins["k_a"]) == [4, 2]  # tokens are the units
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


# --------------------------------------------------------------------------- the type-level test


def test_the_bootstrap_resamples_types():
    """Function types t1 (one token, value 1) and t2 (three tokens, value 0), content 0: a
    resample of the two types is {t1, t1} (mean 1), {t2, t2} (0) or both (1/4), so the 95%
    interval is [0, 1]; resampling the four tokens instead almost never gives 1."""
    values = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    group = np.array([True, True, True, True, False, False])
    types = np.array(["t1", "t2", "t2", "t2", "c", "c"])
    kw = dict(n_bins=1, n_boot=4000, seed=1)
    by_type = frequency_matched_difference(values, group, np.ones(6), types=types, **kw)
    assert by_type.unit == "type" and by_type.difference == pytest.approx(0.25)
    assert (by_type.ci_low, by_type.ci_high) == (0.0, 1.0)
    assert list(by_type.bins[["k_a", "k_b", "n_a", "n_b"]].iloc[0]) == [2, 1, 4, 2]
    by_token = frequency_matched_difference(values, group, np.ones(6), **kw)
    assert by_token.difference == pytest.approx(0.25) and by_token.ci_high < 1.0


def test_a_word_in_both_groups_is_two_types_and_a_type_sits_in_one_bin():
    """'that' read as function (2 tokens) and as content (1 token) are two types; with three
    types in the bin, a permutation labels 'that'-function as the function type 1 time in 3,
    and only then is the difference as large as observed."""
    values = np.array([1.0, 1.0, 0.0, 0.0, 0.0])
    group = np.array(["function", "function", "content", "content", "content"])
    types = np.array(["that", "that", "that", "dog", "dog"])
    res = frequency_matched_difference(values, group, np.full(5, 7.0), types=types, n_bins=1,
                                       order=("function", "content"), n_boot=0, n_perm=6000)
    assert list(res.bins[["k_a", "k_b", "n_a", "n_b"]].iloc[0]) == [1, 2, 2, 3]
    assert res.difference == pytest.approx(1.0)
    assert res.p_value == pytest.approx(1 / 3, abs=4 * np.sqrt(2 / 9 / 6000))
    # a type's tokens at frequencies 10 and 1000 make one type at 100, matched with "b"
    freq = np.array([10.0, 1000.0, 10.0, 1000.0, 10.0, 100.0, 1000.0])
    types = np.array(["x", "x", "y", "z", "a", "b", "c"])
    group = np.array([True] * 4 + [False] * 3)
    res = frequency_matched_difference(np.arange(7.0), group, freq, types=types, n_bins=3,
                                       n_boot=0)
    assert list(res.bins.k_a) == [1, 1, 1] and list(res.bins.k_b) == [1, 1, 1]
    assert list(res.bins.n_a) == [1, 2, 1] and list(res.bins.mean_a) == [2.0, 0.5, 3.0]


def _corpus(rng, n_types: int, tokens: int, function_mean: float, type_sd: float,
            token_sd: float):
    """n_types function and content types with `tokens` tokens each and log-frequencies
    uniform on [0, 5]; type means N(function_mean or 0.4, type_sd), tokens N(type mean,
    token_sd). Returns values, is_function, freq, types."""
    group = np.repeat([True, False], n_types * tokens)
    types = np.repeat(np.arange(2 * n_types), tokens)
    means = np.r_[np.full(n_types, function_mean), np.full(n_types, 0.4)]
    means += type_sd * rng.standard_normal(2 * n_types)
    freq = np.exp(rng.uniform(0, 5, 2 * n_types))[types]
    return means[types] + token_sd * rng.standard_normal(types.size), group, freq, types


def test_one_frequent_function_type_is_significant_for_tokens_not_for_types():
    """Every type has concentration 0.4 except one function type ('the', 300 tokens) with
    0.7. The token-level test counts its 300 tokens as 300 observations (p at its floor, CI
    above 0); for the type-level test it is one of the k_a function types of its bin: a
    permutation labels it function with probability k_a / (k_a + k_b), and then gives the
    observed difference exactly, so p ≈ k_a / (k_a + k_b); a bootstrap leaves it out with
    probability (1 - 1/k_a)^k_a > 0.25, so the CI starts at 0."""
    rng = np.random.default_rng(0)
    values, group, freq, types = _corpus(rng, 100, 20, 0.4, 0.0, 0.0)
    values, group = np.r_[values, np.full(300, 0.7)], np.r_[group, np.ones(300, bool)]
    freq, types = np.r_[freq, np.full(300, np.exp(2.5))], np.r_[types, np.full(300, -1)]
    kw = dict(n_bins=10, n_boot=1000, n_perm=1000, seed=2)
    by_token = frequency_matched_difference(values, group, freq, **kw)
    by_type = frequency_matched_difference(values, group, freq, types=types, min_count=2, **kw)
    assert by_token.p_value == 1 / 1001 and by_token.ci_low > 0
    assert by_type.difference == pytest.approx(by_token.difference, rel=0.5)  # same estimate
    the = by_type.bins[(by_type.bins.freq_low <= np.exp(2.5))
                       & (by_type.bins.freq_high >= np.exp(2.5))].iloc[0]
    share = the.k_a / (the.k_a + the.k_b)
    assert 0.2 < share < 0.8
    assert by_type.p_value == pytest.approx(share, abs=4 * np.sqrt(share * (1 - share) / 1000))
    assert by_type.ci_low == 0.0 < by_type.ci_high


def test_a_difference_between_many_types_is_significant_at_both_levels():
    """60 function types with mean 0.6 and 60 content types with mean 0.4 (type sd 0.05):
    both tests find the difference; the type-level CI is the wider, since type means vary
    and each type's 20 tokens share its mean, and it holds the true 0.2."""
    rng = np.random.default_rng(1)
    values, group, freq, types = _corpus(rng, 60, 20, 0.6, 0.05, 0.05)
    kw = dict(n_bins=10, n_boot=1000, n_perm=1000, seed=3)
    by_token = frequency_matched_difference(values, group, freq, **kw)
    by_type = frequency_matched_difference(values, group, freq, types=types, min_count=2, **kw)
    assert len(by_type.bins) == 10 and (by_type.bins[["k_a", "k_b"]] >= 2).all().all()
    assert by_type.bins.k_a.sum() + by_type.bins.k_b.sum() <= 120
    for res in (by_token, by_type):
        assert res.p_value == 1 / 1001 and res.ci_low > 0.1
    assert by_type.ci_low < 0.2 < by_type.ci_high
    assert by_type.ci_high - by_type.ci_low > 2 * (by_token.ci_high - by_token.ci_low)


def test_balanced_bins_follow_both_groups():
    """90 content types evenly spread over log-frequencies 1..1000 and 10 function types, one
    at 1 and nine at 500..1000: quartiles of the pooled types would put the nine in one bin
    (with half the content types of the shared range), quartiles weighting both groups
    equally spread them over the top bins."""
    freq = np.r_[np.geomspace(1, 1000, 90), 1.0, np.geomspace(500, 1000, 9)]
    group = np.r_[np.zeros(90, bool), np.ones(10, bool)]
    pooled_edges = np.quantile(np.log(freq), [0.25, 0.5, 0.75])
    assert np.log(500) > pooled_edges[-1]  # the unweighted top bin would hold all nine
    res = frequency_matched_difference(np.zeros(100), group, freq, types=np.arange(100),
                                       n_bins=4, n_boot=0)
    assert res.bins.k_a.sum() == 10 and res.bins.k_a.iloc[-1] <= 5
    assert res.bins.freq_low.iloc[-1] > 500


def test_merge_bins():
    """Bins of k_a = [1, 1, 0, 2, 1] and k_b = [3, 3, 3, 3, 1] units, at least 2 each: bin 2
    has no unit of the first group (dropped), bins 0 and 1 merge, and bin 4 joins bin 3."""
    k_a, k_b = [1, 1, 0, 2, 1], [3, 3, 3, 3, 1]
    bin_of = np.r_[np.repeat(np.arange(5), k_a), np.repeat(np.arange(5), k_b), -1]
    is_a = np.r_[np.ones(sum(k_a), bool), np.zeros(sum(k_b) + 1, bool)]
    merged, spans = _merge_bins(bin_of, is_a, 2)
    assert spans == [(0, 1), (3, 4)]
    expected = {0: 0, 1: 0, 2: -1, 3: 1, 4: 1, -1: -1}
    assert list(merged) == [expected[b] for b in bin_of]
    with pytest.raises(ValueError, match=">= 9 units"):
        _merge_bins(bin_of, is_a, 9)
