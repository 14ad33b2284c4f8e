"""Properties and failure cases of analysis.similarity (expectations derived from the math)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from analysis import similarity as sim

FAST = settings(max_examples=25, deadline=None)
METRICS = {
    "cca": sim.cca,
    "svcca": sim.svcca,
    "pwcca": sim.pwcca,
    "cka": sim.linear_cka,
}


def related(seed: int, n: int = 400, da: int = 10, db: int = 8, shared: int = 4, noise=0.5):
    """Two well-conditioned views sharing ``shared`` latent directions, plus offsets."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, shared))
    x = z @ rng.standard_normal((shared, da)) + noise * rng.standard_normal((n, da))
    y = z @ rng.standard_normal((shared, db)) + noise * rng.standard_normal((n, db))
    return x + rng.normal(0, 3, da), y + rng.normal(0, 3, db)


def orthonormal_centred(rng, n: int, m: int) -> np.ndarray:
    """n × m matrix with centred, exactly orthonormal columns."""
    a = rng.standard_normal((n, m))
    q, _ = np.linalg.qr(a - a.mean(0))
    return q


def exact_pair(rng, rhos, extra_a: int, extra_b: int, n: int = 300):
    """Views whose sample canonical correlations are exactly ``rhos`` (then zeros)."""
    m = len(rhos)
    q = orthonormal_centred(rng, n, 2 * m + extra_a + extra_b)
    r = np.asarray(rhos)
    x = np.c_[q[:, :m], q[:, 2 * m : 2 * m + extra_a]]
    y = np.c_[q[:, :m] * r + q[:, m : 2 * m] * np.sqrt(1 - r**2), q[:, 2 * m + extra_a :]]
    return x, y


def random_orthogonal(rng, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def well_conditioned(rng, d: int) -> np.ndarray:
    return random_orthogonal(rng, d) @ np.diag(rng.uniform(0.5, 2.0, d)) @ random_orthogonal(rng, d)


# --------------------------------------------------------------------------- basic properties


@FAST
@given(seed=st.integers(0, 2**32 - 1), metric=st.sampled_from(sorted(METRICS)))
def test_identity_gives_one(seed, metric):
    x, _ = related(seed)
    assert METRICS[metric](x, x).value == pytest.approx(1.0, abs=1e-9)


@FAST
@given(seed=st.integers(0, 2**32 - 1), metric=st.sampled_from(["cca", "svcca", "cka"]))
def test_symmetric(seed, metric):
    x, y = related(seed)
    ab, ba = METRICS[metric](x, y), METRICS[metric](y, x)
    assert ab.value == pytest.approx(ba.value, abs=1e-10)
    assert (ab.k_a, ab.k_b) == (ba.k_b, ba.k_a)


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    metric=st.sampled_from(sorted(METRICS)),
    scale=st.floats(1e-3, 1e3),
    shift=st.floats(-1e3, 1e3),
)
def test_invariant_to_scaling_and_translation(seed, metric, scale, shift):
    x, y = related(seed)
    before = METRICS[metric](x, y).value
    after = METRICS[metric](scale * x + shift, y - shift).value
    assert after == pytest.approx(before, abs=1e-8)


@FAST
@given(seed=st.integers(0, 2**32 - 1), metric=st.sampled_from(["cca", "svcca", "cka"]))
def test_invariant_to_orthogonal_rotation(seed, metric):
    x, y = related(seed)
    rng = np.random.default_rng(seed)
    rotated = x @ random_orthogonal(rng, x.shape[1])
    assert METRICS[metric](rotated, y).value == pytest.approx(METRICS[metric](x, y).value, abs=1e-8)


@FAST
@given(seed=st.integers(0, 2**32 - 1))
def test_cca_invariant_to_invertible_maps_but_cka_is_not(seed):
    x, y = related(seed)
    rng = np.random.default_rng(seed)
    a = well_conditioned(rng, x.shape[1])
    assert sim.cca(x @ a, y).value == pytest.approx(sim.cca(x, y).value, abs=1e-8)
    stretched = x * np.r_[100.0, np.ones(x.shape[1] - 1)]  # invertible, not orthogonal
    assert abs(sim.linear_cka(stretched, y).value - sim.linear_cka(x, y).value) > 1e-4


@settings(max_examples=30, deadline=None)
@given(
    data=hnp.arrays(
        np.float64,
        st.tuples(st.integers(30, 60), st.integers(1, 6)),
        elements=st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False),
    ),
    metric=st.sampled_from(sorted(METRICS)),
)
def test_arbitrary_input_gives_values_in_unit_interval(data, metric):
    """Any finite input, however degenerate: a value in [0, 1], or a ValueError exactly when
    one side has no variance at all, or (CCA family) its distinct rows - 1 <= its dims."""
    other = np.roll(data, 1, axis=0) + np.arange(data.shape[0])[:, None] % 3
    if np.ptp(data, axis=0).max() == 0:
        with pytest.raises(ValueError, match="no variance"):
            METRICS[metric](data, other)
        return
    if metric != "cka" and min(len(np.unique(data, axis=0)),
                               len(np.unique(other, axis=0))) - 1 <= data.shape[1]:
        with pytest.raises(ValueError, match="distinct rows"):
            METRICS[metric](data, other)
        return
    res = METRICS[metric](data, other)
    assert -1e-12 <= res.value <= 1 + 1e-12
    if res.rhos is not None:
        assert np.all((res.rhos >= 0) & (res.rhos <= 1))


# --------------------------------------------------------------------------- known answers


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    rhos=st.lists(st.floats(0.0, 0.99), min_size=1, max_size=5),
    extra_a=st.integers(0, 3),
    extra_b=st.integers(0, 3),
)
def test_recovers_known_canonical_correlations(seed, rhos, extra_a, extra_b):
    rng = np.random.default_rng(seed)
    x, y = exact_pair(rng, rhos, extra_a, extra_b)
    x = x @ well_conditioned(rng, x.shape[1]) + 7.0
    y = y @ well_conditioned(rng, y.shape[1]) - 2.0
    res = sim.cca(x, y)
    k = min(x.shape[1], y.shape[1])
    expected = np.sort(np.r_[rhos, np.zeros(k - len(rhos))])[::-1]
    assert (res.k_a, res.k_b) == (x.shape[1], y.shape[1])
    np.testing.assert_allclose(res.rhos, expected, atol=1e-7)
    assert res.value == pytest.approx(expected.mean(), abs=1e-7)


@pytest.mark.parametrize("n_units", [3, 5])
def test_pwcca_weights_follow_projections_onto_units(n_units):
    """Units x_j = Σ_i W_ij q_i over variates q_i with distinct ρ_i: h_i = ±q_i, so
    <h_i, x_j> = ±W_ij and α_i ∝ Σ_j |W_ij|."""
    rng = np.random.default_rng(n_units)
    rhos = np.array([0.9, 0.6, 0.3])
    q, y = exact_pair(rng, rhos, 0, 2)
    w = rng.standard_normal((3, n_units)) if n_units > 3 else np.diag([1.0, 2.0, 5.0])
    alpha = np.abs(w).sum(1) / np.abs(w).sum()
    res = sim.pwcca(q @ w, y)
    assert res.k_a == 3
    np.testing.assert_allclose(res.weights, alpha, atol=1e-10)
    assert res.value == pytest.approx(np.sum(alpha * rhos), abs=1e-10)
    swapped = sim.pwcca(y, q @ w)  # a has more dims: the weights come from b
    assert swapped.value == pytest.approx(res.value, abs=1e-10)


def test_google_compat_matches_paper_only_without_means():
    rng = np.random.default_rng(1)
    rhos = np.array([0.95, 0.7, 0.4, 0.1])
    x, y = exact_pair(rng, rhos, 0, 2)
    x = x * np.array([1.0, 3.0, 0.5, 2.0])
    paper, google = sim.pwcca(x, y), sim.pwcca(x, y, compat="google")
    assert google.value == pytest.approx(paper.value, abs=1e-8)
    shifted_paper = sim.pwcca(x + 10.0, y)
    shifted_google = sim.pwcca(x + 10.0, y, compat="google")
    assert shifted_paper.value == pytest.approx(paper.value, abs=1e-10)
    assert abs(shifted_google.value - google.value) > 1e-3


def test_google_compat_omits_whitening():
    """With correlated units the google directions differ from the canonical variates."""
    x, y = related(3, n=2000, da=8, db=8, noise=1.0)  # equal sizes: google's own branch
    x = x - x.mean(0)
    paper, google = sim.pwcca(x, y), sim.pwcca(x, y, compat="google")
    assert np.all((google.rhos >= 0) & (google.rhos <= 1))
    np.testing.assert_allclose(np.sort(google.rhos)[::-1], paper.rhos, atol=1e-8)
    assert abs(google.value - paper.value) > 1e-4


def test_debiased_cka_matches_unbiased_hsic_definition():
    """Feature-space debiased CKA equals the U-statistic HSIC on explicit Gram matrices."""
    x, y = related(4, n=30, da=5, db=7, noise=2.0)

    def hsic_u(k, l_):
        n = k.shape[0]
        k, l_ = k - np.diag(np.diag(k)), l_ - np.diag(np.diag(l_))
        one = np.ones(n)
        return (
            np.trace(k @ l_)
            + (one @ k @ one) * (one @ l_ @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * one @ k @ l_ @ one
        ) / (n * (n - 3))

    x, y = x - x.mean(0), y - y.mean(0)
    k, l_ = x @ x.T, y @ y.T
    expected = hsic_u(k, l_) / np.sqrt(hsic_u(k, k) * hsic_u(l_, l_))
    assert sim.linear_cka(x, y, debiased=True).value == pytest.approx(expected, abs=1e-10)


def test_biased_cka_matches_gram_definition():
    x, y = related(5, n=50)
    h = np.eye(50) - 1 / 50
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    expected = np.sum(k * l_) / np.sqrt(np.sum(k * k) * np.sum(l_ * l_))
    assert sim.linear_cka(x, y).value == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- routes agree


@FAST
@given(seed=st.integers(0, 2**32 - 1), metric=st.sampled_from(["cca", "svcca", "pwcca"]))
def test_svd_and_gram_routes_agree(seed, metric):
    x, y = related(seed)
    svd = METRICS[metric](x, y, method="svd")  # tall SVD of each side
    gram = METRICS[metric](x, y, method="gram")  # eigh of the Gram blocks
    gram_bases = METRICS[metric](sim.basis(x, method="gram"), sim.basis(y, method="gram"))
    for res in (gram, gram_bases):
        assert (res.k_a, res.k_b) == (svd.k_a, svd.k_b)
        assert res.value == pytest.approx(svd.value, abs=1e-9)
        np.testing.assert_allclose(res.rhos, svd.rhos, atol=1e-9)


@FAST
@given(seed=st.integers(0, 2**32 - 1), metric=st.sampled_from(sorted(METRICS)))
def test_float32_input_agrees_with_float64(seed, metric):
    x, y = related(seed)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    exact = METRICS[metric](x32.astype(np.float64), y32.astype(np.float64)).value
    assert METRICS[metric](x32, y32).value == pytest.approx(exact, abs=1e-12)
    assert METRICS[metric](x32, y32).value == pytest.approx(METRICS[metric](x, y).value, abs=1e-5)


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_torch_cpu_input_matches_numpy(metric):
    x, y = related(7)
    expected = METRICS[metric](x, y).value
    assert METRICS[metric](torch.from_numpy(x), torch.from_numpy(y)).value == pytest.approx(
        expected, abs=1e-12
    )
    x32 = torch.from_numpy(x).float()
    assert METRICS[metric](x32, y.astype(np.float32)).value == pytest.approx(
        METRICS[metric](x.astype(np.float32), y.astype(np.float32)).value, abs=1e-12
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("metric", sorted(METRICS))
def test_cuda_input_matches_cpu(metric):
    x, y = related(8)
    xg, yg = torch.from_numpy(x).float().cuda(), torch.from_numpy(y).float().cuda()
    expected = METRICS[metric](x.astype(np.float32), y.astype(np.float32)).value
    assert METRICS[metric](xg, yg).value == pytest.approx(expected, abs=1e-9)
    b = sim.basis(xg)
    assert b.u.is_cuda and b.u.dtype == torch.float64
    values = sim.pairwise([xg, yg], metric=metric)
    assert values[0, 1] == pytest.approx(expected, abs=1e-9)


# --------------------------------------------------------------------------- reuse and pairs


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_pairwise_matches_single_calls(metric):
    reps = [related(s, da=6 + s, db=5)[s % 2] for s in range(4)]
    others = [related(10 + s, da=7, db=9)[0] for s in range(3)]
    sym = sim.pairwise(reps, metric=metric)
    cross = sim.pairwise(reps, others, metric=metric, return_results=True)
    for i, a in enumerate(reps):
        for j, b in enumerate(reps):
            assert sym[i, j] == pytest.approx(METRICS[metric](a, b).value, abs=1e-10)
        for j, b in enumerate(others):
            single = METRICS[metric](a, b)
            assert cross[i, j].value == pytest.approx(single.value, abs=1e-10)
            assert (cross[i, j].k_a, cross[i, j].k_b) == (single.k_a, single.k_b)


def test_pairwise_symmetric_results_swap_k():
    x, _ = related(1, da=12)
    y, _ = related(2, da=5)
    res = sim.pairwise([x, y], metric="svcca", k=8, return_results=True)
    assert (res[0, 1].k_a, res[0, 1].k_b) == (8, 5)
    assert (res[1, 0].k_a, res[1, 0].k_b) == (5, 8)


def test_basis_reuse_and_truncation_guard():
    x, y = related(9, da=12, db=12)
    bx, by = sim.basis(x), sim.basis(y)
    for metric, fn in METRICS.items():
        assert fn(bx, by).value == pytest.approx(fn(x, y).value, abs=1e-10), metric
        assert fn(bx, y).value == pytest.approx(fn(x, y).value, abs=1e-10), metric
    small = sim.basis(x, k=3)
    assert small.k == 3 and small.rank == 12
    assert sim.svcca(small, by, k=3).value == pytest.approx(sim.svcca(x, y, k=3).value, abs=1e-10)
    with pytest.raises(ValueError, match="stores 3 directions"):
        sim.cca(small, by)


def test_fixed_k_is_capped_at_rank_and_reported():
    rng = np.random.default_rng(2)
    low = rng.standard_normal((500, 3)) @ rng.standard_normal((3, 10))  # rank 3
    y = rng.standard_normal((500, 10))
    res = sim.svcca(low, y, k=6)
    assert (res.k_a, res.k_b, res.rank_a) == (3, 6, 3)
    assert len(res.rhos) == 3


# --------------------------------------------------------------------------- failure cases


def test_tokens_not_more_than_dims_raises_or_gives_all_ones():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((50, 64)), rng.standard_normal((50, 64))
    for fn in (sim.cca, sim.svcca, sim.pwcca):
        with pytest.raises(ValueError, match="more tokens than dimensions"):
            fn(x, y)
    with pytest.raises(ValueError, match="linear_cka"):
        sim.pairwise([x, y], metric="cca")
    res = sim.cca(x, y, allow_underdetermined=True)
    assert res.rank_a == res.rank_b == 49  # centring leaves N - 1 dimensions
    np.testing.assert_allclose(res.rhos, 1.0, atol=1e-8)
    assert sim.svcca(x, y, k=10).value < 0.9  # reducing with k is the suggested way out
    assert np.isfinite(sim.linear_cka(x, y).value)


def degenerate_layer(rng, n_tokens=1000):
    """64 units: 40 live, 8 dead, 6 constant, 6 duplicates, 4 with variance 1e-18."""
    live = rng.standard_normal((n_tokens, 40)) @ well_conditioned(rng, 40)
    dead = np.zeros((n_tokens, 8))
    const = np.full((n_tokens, 6), 5.0)
    dup = live[:, :6].copy()
    tiny = 1e-9 * rng.standard_normal((n_tokens, 4))
    x = np.c_[live, dead, const, dup, tiny]
    return x[:, rng.permutation(64)]


@pytest.mark.parametrize("method", ["auto", "svd", "gram"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dead_constant_duplicate_and_tiny_units(method, dtype):
    """Dead, constant and duplicated units never count. The 1e-9-scale units are resolved by
    float64 input on the SVD route ("auto" falls back to it: the Gram route cannot see below
    ~1e-7 s_max) and are below the float32 input's precision cut."""
    rng = np.random.default_rng(4)
    x, y = degenerate_layer(rng).astype(dtype), degenerate_layer(rng).astype(dtype)
    rank = 44 if dtype == np.float64 and method != "gram" else 40
    assert sim.basis(x, method=method).rank == rank
    for fn in METRICS.values():
        res = fn(x, y, method=method)
        assert np.isfinite(res.value) and 0 <= res.value <= 1
        assert fn(x, x, method=method).value == pytest.approx(1.0, abs=1e-9)
    res = sim.cca(x, y, method=method)
    assert (res.k_a, res.k_b, res.rank_a) == (rank, rank, rank)
    assert np.all(res.rhos <= 1)
    coarse = sim.cca(x, y, method=method, rtol=1e-6)  # an explicit cut above the tiny units
    assert coarse.rank_a == 40 and coarse.rtol_a >= 1e-6 and np.isfinite(coarse.value)


def test_variance_rules_give_different_k_on_low_rank_data():
    rng = np.random.default_rng(6)
    latent = rng.standard_normal((2000, 16)) / np.arange(1, 17)
    x = latent @ rng.standard_normal((16, 128)) + 0.1 * rng.standard_normal((2000, 128))
    k_s2, k_s = sim.basis(x, variance=0.99).k, sim.basis(x, variance=0.99, rule="s").k
    assert k_s2 <= 16 < k_s
    res = sim.svcca(x, x[:, ::-1], rule="s")
    assert res.k_a == k_s


def test_n_keep_by_hand():
    s = np.array([3.0, 1.0, 1.0, 1.0, 1.0])  # s²: 9,1,1,1,1 (13); s: 3,1,1,1,1 (7)
    assert sim.n_keep(s, 0.9, "s2") == 4  # 12/13 = 0.923 is the first share >= 0.9
    assert sim.n_keep(s, 0.9, "s") == 5  # 6/7 = 0.857 < 0.9
    assert sim.n_keep(s, 0.69, "s2") == 1  # 9/13 = 0.692
    assert sim.n_keep(s) == 5 and sim.n_keep(s, k=2) == 2 and sim.n_keep(s, k=9) == 5
    with pytest.raises(ValueError, match="rule"):
        sim.n_keep(s, 0.9, "s3")


def test_centring_matters_for_cka():
    """ReLU features of independent layers: centred CKA ≈ 0, the uncentred formula is not."""
    rng = np.random.default_rng(7)
    x = np.maximum(rng.standard_normal((4000, 64)), 0)
    y = np.maximum(rng.standard_normal((4000, 64)), 0)
    uncentred = np.sum((x.T @ y) ** 2) / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))
    assert uncentred > 0.5
    assert sim.linear_cka(x, y).value < 0.05


def test_debiased_cka_near_zero_when_tokens_equal_dims():
    rng = np.random.default_rng(8)
    vals_biased, vals_debiased = [], []
    for _ in range(5):
        x, y = rng.standard_normal((128, 128)), rng.standard_normal((128, 128))
        vals_biased.append(sim.linear_cka(x, y).value)
        vals_debiased.append(sim.linear_cka(x, y, debiased=True).value)
    assert np.mean(vals_biased) > 0.3  # biased CKA is inflated at N ≈ n
    assert abs(np.mean(vals_debiased)) < 0.03


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_bad_input_raises(metric):
    fn = METRICS[metric]
    x = np.random.default_rng(0).standard_normal((100, 5))
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        fn(bad, x)
    bad[3, 2] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        fn(x, bad)
    with pytest.raises(ValueError, match="empty"):
        fn(x[:0], x[:0])
    with pytest.raises(ValueError, match="same tokens"):
        fn(x, x[:-1])
    with pytest.raises(ValueError, match="2-D"):
        fn(x[:, 0], x[:, 0])


# --------------------------------------------------------------------------- chance level


def test_shuffled_baseline_measures_bias_at_same_size():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((300, 20))
    y = x @ well_conditioned(rng, 20) + 0.3 * rng.standard_normal((300, 20))
    base = sim.shuffled_baseline(x, y, "cca", n_shuffles=30, seed=1)
    assert base.values.shape == (30,) and base.std > 0
    assert 0.05 < base.mean < 0.5  # upward bias of CCA at N = 15 n, far below the real value
    assert sim.cca(x, y).value > 0.9
    indep = [sim.cca(x, rng.standard_normal((300, 20))).value for _ in range(10)]
    assert abs(np.mean(indep) - base.mean) < 4 * base.std
    again = sim.shuffled_baseline(x, y, "cca", n_shuffles=30, seed=1)
    np.testing.assert_array_equal(again.values, base.values)


@pytest.mark.parametrize("metric", ["svcca", "pwcca", "cka"])
def test_shuffled_baseline_matches_explicit_permutation(metric):
    x, y = related(10)
    base = sim.shuffled_baseline(x, y, metric, n_shuffles=3, seed=5)
    rng = np.random.default_rng(5)
    for value in base.values:
        perm = rng.permutation(len(y))
        assert value == pytest.approx(METRICS[metric](x, y[perm]).value, abs=1e-10)
    google = sim.shuffled_baseline(x, y, "pwcca", compat="google", n_shuffles=2, seed=5)
    assert google.metric == "pwcca_google" and np.all(google.values < 0.5)


@pytest.mark.parametrize("scale", [1e-200, 1e200])
@pytest.mark.parametrize("method", ["svd", "gram"])
def test_extreme_scales_do_not_under_or_overflow(scale, method):
    """The Gram route squares the data (1e-200² underflows): it must rescale first."""
    x, y = related(11)
    for metric, fn in METRICS.items():
        kw = {} if metric == "cka" else {"method": method}
        assert fn(x * scale, y, **kw).value == pytest.approx(fn(x, y).value, abs=1e-9), metric
    debiased = sim.linear_cka(sim.basis(x * scale, method=method), y, debiased=True).value
    assert debiased == pytest.approx(sim.linear_cka(x, y, debiased=True).value, abs=1e-9)


def test_svd_falls_back_when_lapack_gesdd_does_not_converge(monkeypatch):
    """gesdd failed on U_aᵀU_b of a 200-unit LSTM layer against itself in the default run;
    the fallback driver must give the same numbers."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 30))
    y = x @ rng.standard_normal((30, 30)) + 0.5 * rng.standard_normal((400, 30))
    metrics = {"svcca": sim.svcca, "pwcca": sim.pwcca, "cka": sim.linear_cka}

    def values():
        return {m: f(x, y).value for m, f in metrics.items()}

    expected = values()

    def fails(*args, **kwargs):
        raise torch.linalg.LinAlgError("linalg.svd: The algorithm failed to converge")

    monkeypatch.setattr(torch.linalg, "svd", fails)
    monkeypatch.setattr(torch.linalg, "svdvals", fails)
    assert values() == pytest.approx(expected, abs=1e-10)
    assert sim.pwcca(x, x).value == pytest.approx(1.0)


# --------------------------------------------------------------------------- numerics fixes


def test_one_token_more_than_dims_is_refused():
    """After centring the rank is at most tokens - 1: 201 tokens x 200 dims of independent
    noise give CCA = PWCCA = SVCCA(k=200) = 1 exactly, so tokens - 1 <= dims must raise."""
    rng = np.random.default_rng(12)
    x, y = rng.standard_normal((201, 200)), rng.standard_normal((201, 200))
    for fn, kw in ((sim.cca, {}), (sim.pwcca, {}), (sim.svcca, {"k": 200})):
        with pytest.raises(ValueError, match="more tokens than dimensions"):
            fn(x, y, **kw)
        assert fn(x, y, allow_underdetermined=True, **kw).value == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="more tokens than dimensions"):
        sim.svcca(x[:21, :30], y[:21, :30], k=20)
    with pytest.raises(ValueError, match="more tokens than dimensions"):
        sim.pairwise([x, y], metric="cca")
    assert sim.cca(x[:, :199], y[:, :199]).value < 1 - 1e-3  # 201 - 1 > 199: accepted
    assert sim.svcca(x[:22, :30], y[:22, :30], k=20).value < 1 - 1e-3


@pytest.mark.parametrize("n_tokens", [1, 2])
def test_cka_refuses_fewer_than_three_tokens(n_tokens):
    """With 2 tokens both centred Gram matrices are multiples of [[1, -1], [-1, 1]], so CKA
    is 1 for any data; with 1 token it is 0/0."""
    rng = np.random.default_rng(n_tokens)
    x, y = rng.standard_normal((n_tokens, 5)), rng.standard_normal((n_tokens, 7))
    with pytest.raises(ValueError, match="at least 3 tokens"):
        sim.linear_cka(x, y)
    with pytest.raises(ValueError, match="at least 3 tokens"):
        sim.linear_cka(sim.basis(x), sim.basis(y))
    with pytest.raises(ValueError, match="at least 3 tokens"):
        sim.pairwise([x, y], metric="cka")
    with pytest.raises(ValueError, match="at least 4 tokens"):
        sim.linear_cka(x, y, debiased=True)


@pytest.mark.parametrize("fill", [0.0, 5.0])
def test_no_variance_raises_in_single_calls(fill):
    """All-zero (or all-constant) input has no similarity to anything: a clear error, not NaN."""
    x = np.full((100, 4), fill)
    y = np.random.default_rng(0).standard_normal((100, 4))
    for fn in METRICS.values():
        for a, b in ((x, y), (y, x), (x, x)):
            with pytest.raises(ValueError, match="no variance"):
                fn(a, b)
        with pytest.raises(ValueError, match="no variance"):
            fn(sim.basis(x), y)
    b = sim.basis(x)
    assert (b.rank, b.k) == (0, 0)


def test_no_variance_is_nan_with_reason_in_pairwise():
    """One dead representation must not void a matrix: its cells are NaN and say why."""
    rng = np.random.default_rng(1)
    reps = [rng.standard_normal((100, 4)), np.zeros((100, 4)), rng.standard_normal((100, 4))]
    for metric in sorted(METRICS):
        with pytest.warns(RuntimeWarning, match="no variance"):
            res = sim.pairwise(reps, metric=metric, return_results=True)
        values = np.array([[r.value for r in row] for row in res])
        assert np.isnan(values[1]).all() and np.isnan(values[:, 1]).all()
        assert np.isfinite(values[[0, 2]][:, [0, 2]]).all()
        assert "no variance" in res[1, 0].reason and "no variance" in res[0, 1].reason
        assert res[0, 2].reason is None
        with pytest.warns(RuntimeWarning, match="no variance"):
            base = sim.shuffled_baseline(reps[0], reps[1], metric, n_shuffles=3)
        assert np.isnan(base.mean) and np.isnan(base.values).all()


def test_default_rtol_follows_input_precision():
    """The default cut depends on the input dtype and size and is reported with every value."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((500, 20))
    r64, r32 = sim.default_rtol(500, 20, np.float64), sim.default_rtol(500, 20, np.float32)
    assert r64 < 1e-12 < 1e-6 < r32 < 1e-4
    assert sim.default_rtol(500, 20, torch.float32) == r32
    assert sim.default_rtol(500, 20, np.int64) == r64  # integers are exact in float64
    assert sim.basis(x).rtol == r64 and sim.basis(x.astype(np.float32)).rtol == r32
    assert sim.basis(x, rtol=1e-3).rtol == 1e-3
    res = sim.cca(x.astype(np.float32), x[:, ::-1].copy())
    assert (res.rtol_a, res.rtol_b) == (r32, r64)
    for metric in sorted(METRICS):
        r = sim.pairwise([x, x.astype(np.float32)], metric=metric, return_results=True)
        assert (r[0, 1].rtol_a, r[0, 1].rtol_b) == (r64, r32)
        assert (r[1, 0].rtol_a, r[1, 0].rtol_b) == (r32, r64)


def layernorm32(rng, n: int, d: int, offset: float, latent: np.ndarray | None = None):
    """A float32 LayerNorm layer: rows normalised to zero mean and unit variance, then an affine
    map. The pre-activations carry a per-token offset (as residual streams do): the float32
    rounding of h - mean(h) grows with it, and so does the singular value of the null
    direction (1/γ) that row normalisation creates. Returns (float32 output, float64 output
    of the same float32 pre-activations, whose null direction is exact)."""
    mix = np.eye(d) + 0.3 * rng.standard_normal((d, d))
    h = rng.standard_normal((n, d)) @ mix
    if latent is not None:
        h = h + latent @ rng.standard_normal((latent.shape[1], d))
    h = (h + offset * rng.standard_normal((n, 1))).astype(np.float32)
    g = (1 + 0.3 * rng.standard_normal(d)).astype(np.float32)
    b = (0.5 * rng.standard_normal(d)).astype(np.float32)
    outs = []
    for dt in (np.float32, np.float64):
        hh = h.astype(dt)
        z = (hh - hh.mean(1, keepdims=True)) / hh.std(1, keepdims=True)
        outs.append(z * g.astype(dt) + b.astype(dt))
    return outs[0], outs[1]


@pytest.mark.parametrize("d", [64, 200])
def test_layernorm_null_direction_dropped_consistently(d):
    """Per-token offsets of 5-60 σ put the null direction of float32 LayerNorm outputs at
    s/s_max = 2.5e-7 to 3.1e-6, across the old fixed cut (1e-6): it must be dropped in every
    layer, and no genuine direction (the smallest is at 6.5e-4 for 200 dims)."""
    ranks, nulls = [], []
    for seed, offset in enumerate([5.0, 15.0, 30.0, 60.0]):
        y32, y64 = layernorm32(np.random.default_rng(seed), 2000, d, offset)
        yc = y32.astype(np.float64) - y32.mean(0, dtype=np.float64)
        s = np.linalg.svd(yc, compute_uv=False)
        nulls.append(s[-1] / s[0])
        b = sim.basis(y32)
        assert b.rtol == sim.default_rtol(2000, d, np.float32)
        assert s[-2] / s[0] > 5 * b.rtol > 50 * s[-1] / s[0]  # the gap the cut sits in
        ranks.append((b.rank, sim.basis(y32, method="svd").rank, sim.basis(y64).rank))
    assert min(nulls) < 1e-6 < max(nulls)  # the old cut would keep some and drop others
    assert ranks == [(d - 1, d - 1, d - 1)] * 4


def test_layernorm_full_rank_cca_is_stable():
    """Full-rank CCA/PWCCA of float32 LayerNorm layers equal those of the same layers computed
    in float64 (exact null direction), whatever the size of the float32 null direction."""
    rng = np.random.default_rng(3)
    latent = rng.standard_normal((4000, 8))
    layers = [layernorm32(rng, 4000, 48, off, latent) for off in (5.0, 40.0, 15.0, 60.0)]
    for (a32, a64), (b32, b64) in zip(layers[::2], layers[1::2], strict=True):
        for fn in (sim.cca, sim.pwcca):
            r32, r64 = fn(a32, b32), fn(a64, b64)
            assert (r32.k_a, r32.k_b) == (r64.k_a, r64.k_b) == (47, 47)
            assert r32.value == pytest.approx(r64.value, abs=2e-5)
