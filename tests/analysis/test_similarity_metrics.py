"""The registry measures of analysis.similarity (procrustes, procrustes_angular, mutual_knn,
rsa, cka_debiased): each against a direct, naive implementation of its definition, the
invariances that definition implies, chance level, and the registry machinery itself."""

import dataclasses
import itertools
import sys

import configured
import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import similarity as sim
from analysis.similarity import bases, rdm, registry

FAST = settings(max_examples=15, deadline=None)
NEW = ["procrustes", "procrustes_angular", "mutual_knn", "rsa", "cka_debiased"]


# --------------------------------------------------------------------------- naive definitions


def naive_procrustes(x, y):
    """‖X_cᵀY_c‖_* / (‖X_c‖_F ‖Y_c‖_F) straight from the definition."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    nuclear = np.linalg.svd(xc.T @ yc, compute_uv=False).sum()
    return nuclear / (np.linalg.norm(xc) * np.linalg.norm(yc))


def naive_neighbours(z, k):
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    cos = np.round(zn @ zn.T, 11)  # duplicated rows: equal up to rounding, then by index
    out = []
    for i in range(len(z)):
        order = [j for j in np.argsort(-cos[i], kind="stable") if j != i]
        out.append(set(order[:k]))
    return out


def naive_mutual_knn(x, y, k=10):
    """Rows l2-normalised, cosine neighbours without the row itself, mean |∩| / k."""
    a, b = naive_neighbours(x, k), naive_neighbours(y, k)
    return np.mean([len(a[i] & b[i]) / k for i in range(len(x))])


def naive_rsa(x, y):
    """Spearman correlation of the upper triangles of 1 - Pearson(rows)."""
    iu = np.triu_indices(len(x), 1)
    rdm_x, rdm_y = (1 - np.corrcoef(x))[iu], (1 - np.corrcoef(y))[iu]
    return scipy.stats.spearmanr(rdm_x, rdm_y).statistic


def naive_cka_debiased(x, y):
    """Unbiased HSIC (Song et al. 2007) on explicit linear Gram matrices."""

    def hsic(k, l_):
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
    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


NAIVE = {
    "procrustes": naive_procrustes,
    "procrustes_angular": lambda x, y: np.arccos(naive_procrustes(x, y)),
    "mutual_knn": naive_mutual_knn,
    "rsa": naive_rsa,
    "cka_debiased": naive_cka_debiased,
}


# --------------------------------------------------------------------------- data


def pair(seed: int, kind: str, n: int = 300, da: int = 20, db: int = 16):
    """Two related views: "random" (full rank) or "lowrank" (rank 5 exactly, plus offsets)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 5))
    if kind == "lowrank":
        x = z @ rng.standard_normal((5, da)) + rng.normal(0, 2, da)
        y = z @ rng.standard_normal((5, db)) + rng.normal(0, 2, db)
    else:
        x = z @ rng.standard_normal((5, da)) + rng.standard_normal((n, da))
        y = z @ rng.standard_normal((5, db)) + 1.5 * rng.standard_normal((n, db))
    return x, y


def random_orthogonal(rng, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


# --------------------------------------------------------------------------- definitions


@pytest.mark.parametrize("kind", ["random", "lowrank"])
@pytest.mark.parametrize("metric", NEW)
def test_matches_naive_definition(metric, kind):
    for seed in range(3):
        x, y = pair(seed, kind)
        expected = NAIVE[metric](x, y)
        res = sim.similarity(x, y, metric)
        assert res.value == pytest.approx(expected, abs=1e-9)
        assert res.kind == ("distance" if metric == "procrustes_angular" else "similarity")
        vals = sim.pairwise([x, y], [y, x], metric=metric)
        assert vals[0, 0] == pytest.approx(expected, abs=1e-9)
        assert vals[1, 1] == pytest.approx(expected, abs=1e-9)  # symmetric


@pytest.mark.parametrize("metric", NEW)
def test_same_from_bases_and_from_arrays(metric):
    """dynamics passes full-rank Basis objects for every metric; mutual_knn and rsa rebuild
    the rows from them (u s vᵀ + mean)."""
    x, y = pair(4, "random")
    bx, by = sim.basis(x), sim.basis(y)
    expected = sim.similarity(x, y, metric).value
    assert sim.similarity(bx, by, metric).value == pytest.approx(expected, abs=1e-9)
    assert sim.pairwise([bx], [by], metric=metric)[0, 0] == pytest.approx(expected, abs=1e-9)
    if metric in ("mutual_knn", "rsa"):
        with pytest.raises(ValueError, match="raw rows"):
            sim.similarity(sim.basis(x, k=3), by, metric)


def test_public_functions_are_the_registry_measures():
    x, y = pair(5, "random")
    assert sim.procrustes(x, y).value == sim.similarity(x, y, "procrustes").value
    assert sim.procrustes_angular(x, y).value == sim.similarity(x, y, "procrustes_angular").value
    assert sim.mutual_knn(x, y, k=5).value == sim.similarity(x, y, "mutual_knn", k=5).value
    assert sim.rsa(x, y).value == sim.similarity(x, y, "rsa").value
    assert sim.similarity(x, y, "cka_debiased").value == pytest.approx(
        sim.linear_cka(x, y, debiased=True).value, abs=1e-10
    )
    res = sim.mutual_knn(x, y, k=5)
    assert res.n_neighbors == 5 and (res.k_a, res.k_b) == (20, 16)
    assert sim.procrustes_angular(x, y).value == pytest.approx(
        np.arccos(sim.procrustes(x, y).value), abs=1e-15
    )


@pytest.mark.parametrize("metric", NEW)
def test_representation_against_itself(metric):
    x, _ = pair(6, "random")
    value = sim.similarity(x, x, metric).value
    if metric == "procrustes_angular":  # arccos(1 - δ) ≈ sqrt(2δ): rounding shows as ~1e-8
        assert 0 <= value < 1e-6
    else:
        assert value == pytest.approx(1.0, abs=1e-12)


def test_mutual_knn_k_and_ties():
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((200, 8)), rng.standard_normal((200, 8))
    for k in (1, 3, 25):
        assert sim.mutual_knn(x, y, k=k).value == pytest.approx(
            naive_mutual_knn(x, y, k), abs=1e-15
        )
    # the 26 directions of {-1, 0, 1}^3: distinct rows whose cosines tie at the boundary
    # (4 at 1/√2, then 4 at 1/√3 for k=6); copies are merged (tests/analysis/similarity)
    grid = np.array([p for p in itertools.product((-1, 0, 1), repeat=3) if any(p)], float)
    other = rng.standard_normal((26, 3))
    first = sim.mutual_knn(grid, other, k=6).value
    assert first == sim.mutual_knn(grid, other, k=6).value  # deterministic
    assert first == pytest.approx(naive_mutual_knn(grid, other, 6), abs=1e-12)  # stable ties
    for bad in (0, 199):
        with pytest.raises(ValueError, match="k < tokens - 1"):
            sim.mutual_knn(x, y, k=bad)


def test_rsa_subsamples_rows_above_max_rows():
    x, y = pair(8, "random", n=700)
    res = sim.rsa(x, y, max_rows=250, sample_seed=3)
    rows = sim.rsa_rows(700, 250, 3)
    assert res.n_rows_used == 250 and len(rows) == 250 and np.all(np.diff(rows) > 0)
    assert res.value == pytest.approx(naive_rsa(x[rows], y[rows]), abs=1e-9)
    assert sim.rsa(x, y, max_rows=250, sample_seed=3).value == res.value
    assert sim.rsa(x, y, max_rows=250, sample_seed=4).value != res.value
    full = sim.rsa(x, y, max_rows=None)
    assert full.n_rows_used == 700 and full.value == pytest.approx(naive_rsa(x, y), abs=1e-9)
    assert sim.rsa(x, y).n_rows_used == 700  # default max_rows=2000
    res = sim.pairwise([x, y], metric="rsa", max_rows=250, sample_seed=3, return_results=True)
    assert res[0, 1].n_rows_used == 250 and res[0, 1].value == pytest.approx(
        naive_rsa(x[rows], y[rows]), abs=1e-9
    )


# --------------------------------------------------------------------------- invariances


@FAST
@given(seed=st.integers(0, 2**32 - 1), scale=st.floats(1e-3, 1e3), shift=st.floats(-1e3, 1e3))
def test_procrustes_invariances(seed, scale, shift):
    """‖(XQ)ᵀY‖_* = ‖XᵀY‖_* for orthogonal Q on either side; centring removes translations;
    the norms cancel an isotropic scale. A per-unit rescaling is not orthogonal: it changes."""
    x, y = pair(seed % 1000, "random")
    rng = np.random.default_rng(seed)
    for metric in ("procrustes", "procrustes_angular"):
        before = sim.similarity(x, y, metric).value
        moved = (
            scale * x @ random_orthogonal(rng, x.shape[1]) + shift,
            y @ random_orthogonal(rng, y.shape[1]) - shift,
        )
        assert sim.similarity(*moved, metric).value == pytest.approx(before, abs=1e-9)
        stretched = x * np.r_[30.0, np.ones(x.shape[1] - 1)]
        assert abs(sim.similarity(stretched, y, metric).value - before) > 1e-4


def test_procrustes_angular_is_a_metric():
    """Williams et al. 2021: the angular shape distance satisfies the triangle inequality."""
    rng = np.random.default_rng(9)
    latent = rng.standard_normal((400, 4))
    reps = [
        latent @ rng.standard_normal((4, 12)) + s * rng.standard_normal((400, 12))
        for s in (0.1, 0.5, 1.0, 2.0, 4.0)
    ]
    d = sim.pairwise(reps, metric="procrustes_angular")
    assert np.allclose(d, d.T) and np.all(np.diag(d) < 1e-6) and np.all(d >= 0)
    for i, j, k in np.ndindex(5, 5, 5):
        assert d[i, k] <= d[i, j] + d[j, k] + 1e-12
    assert np.all(d <= np.pi / 2)


@FAST
@given(seed=st.integers(0, 2**32 - 1))
def test_mutual_knn_invariances(seed):
    """Cosine between l2-normalised rows: per-row positive scaling and orthogonal maps of
    the units leave every neighbour set unchanged (exactly the same value); uncentred rows
    make it depend on translation; flipping the sign of rows changes cosines."""
    x, y = pair(seed % 1000, "random", n=200)
    rng = np.random.default_rng(seed)
    before = sim.mutual_knn(x, y).value
    scaled = x * rng.uniform(0.01, 100.0, (len(x), 1))
    rotated = y @ random_orthogonal(rng, y.shape[1])
    assert sim.mutual_knn(scaled, rotated).value == pytest.approx(before, abs=1e-12)
    assert sim.mutual_knn(y, x).value == before
    assert sim.mutual_knn(x + 3.0 * x.std(), y).value != pytest.approx(before, abs=1e-3)
    flip = np.where(rng.random((len(x), 1)) < 0.5, -1.0, 1.0)
    assert sim.mutual_knn(x * flip, y).value != pytest.approx(before, abs=1e-3)


@FAST
@given(seed=st.integers(0, 2**32 - 1))
def test_rsa_invariances(seed):
    """Pearson correlation between rows is unchanged by x_i -> a_i x_i + b_i (a_i > 0, b_i
    added to every unit), by permuting units and by orthogonal maps that fix the all-ones
    direction (they keep each row's mean and its centred inner products); a general rotation
    or adding a vector to every row changes it."""
    x, y = pair(seed % 1000, "random", n=150)
    rng = np.random.default_rng(seed)
    before = sim.rsa(x, y).value
    affine = x * rng.uniform(0.1, 10.0, (len(x), 1)) + rng.normal(0, 100, (len(x), 1))
    assert sim.rsa(affine, y).value == pytest.approx(before, abs=1e-9)
    assert sim.rsa(x[:, rng.permutation(x.shape[1])], y).value == pytest.approx(before, abs=1e-9)
    w = rng.standard_normal(y.shape[1])
    w -= w.mean()  # ⊥ ones, so the reflection fixes the all-ones direction
    householder = np.eye(y.shape[1]) - 2 * np.outer(w, w) / (w @ w)
    assert sim.rsa(x, y @ householder).value == pytest.approx(before, abs=1e-9)
    assert sim.rsa(y, x).value == pytest.approx(before, abs=1e-12)
    shifted = x + 5.0  # the same shift for every row: invariant, but a rotation now moves
    assert sim.rsa(shifted, y).value == pytest.approx(before, abs=1e-9)  # it off the ones
    assert abs(sim.rsa(shifted @ random_orthogonal(rng, x.shape[1]), y).value - before) > 1e-3
    assert abs(sim.rsa(x + rng.normal(0, 3, x.shape[1]), y).value - before) > 1e-4


# --------------------------------------------------------------------------- chance level


@pytest.mark.parametrize("metric", NEW)
def test_baseline_matches_explicit_permutation(metric):
    """A shuffle permutes one side's cache; the same as recomputing on y[perm]."""
    x, y = pair(10, "random")
    base = sim.shuffled_baseline(x, y, metric, n_shuffles=3, seed=5)
    rng = np.random.default_rng(5)
    for value in base.values:
        perm = rng.permutation(len(y))
        assert value == pytest.approx(sim.similarity(x, y[perm], metric).value, abs=1e-9)
    assert base.metric == metric


def test_rsa_baseline_permutes_within_the_rows_used():
    x, y = pair(11, "random", n=500)
    base = sim.shuffled_baseline(x, y, "rsa", n_shuffles=3, seed=2, max_rows=200)
    rows = sim.rsa_rows(500, 200, 0)
    rng = np.random.default_rng(2)
    for value in base.values:
        perm = rng.permutation(200)
        assert value == pytest.approx(naive_rsa(x[rows], y[rows][perm]), abs=1e-9)


def test_baselines_near_chance_on_independent_data():
    rng = np.random.default_rng(12)
    n, d = 500, 10
    x = rng.standard_normal((n, d))
    y = x @ rng.standard_normal((d, d)) + 0.3 * rng.standard_normal((n, d))  # related
    for metric in NEW:
        assert sim.similarity(x, y, metric).value != pytest.approx(
            sim.shuffled_baseline(x, y, metric, n_shuffles=10).mean, abs=0.1
        )
    knn = sim.shuffled_baseline(x, y, "mutual_knn", n_shuffles=10, k=10)
    assert knn.mean == pytest.approx(10 / (n - 1), abs=0.01)  # random k-subsets of n - 1
    for metric in ("rsa", "cka_debiased"):
        assert abs(sim.shuffled_baseline(x, y, metric, n_shuffles=10).mean) < 0.05
    proc = sim.shuffled_baseline(x, y, "procrustes", n_shuffles=20)
    indep = [sim.procrustes(x, rng.standard_normal((n, d))).value for _ in range(10)]
    assert abs(np.mean(indep) - proc.mean) < 4 * proc.std
    ang = sim.shuffled_baseline(x, y, "procrustes_angular", n_shuffles=20)
    assert ang.mean == pytest.approx(np.arccos(proc.mean), abs=4 * ang.std)


# --------------------------------------------------------------------------- registry


def test_caches_are_computed_once_per_call(monkeypatch):
    counts = {}
    for name in NEW + ["svcca"]:
        measure = registry._REGISTRY[name]

        def counted(x, opts, label, _prepare=measure.prepare, _name=name):
            counts[_name] = counts.get(_name, 0) + 1
            return _prepare(x, opts, label)

        monkeypatch.setitem(registry._REGISTRY, name, dataclasses.replace(measure, prepare=counted))
    reps = [pair(s, "random")[0] for s in range(4)]
    others = [pair(10 + s, "random")[1] for s in range(3)]
    for name in NEW + ["svcca"]:
        counts.clear()
        sim.pairwise(reps, metric=name)
        assert counts[name] == 4
        counts.clear()
        sim.pairwise(reps, others, metric=name)
        assert counts[name] == 7
        counts.clear()
        sim.shuffled_baseline(reps[0], others[0], name, n_shuffles=5)
        assert counts[name] == 2


@pytest.mark.parametrize("metric", NEW)
def test_pairwise_matches_single_calls(metric):
    reps = [pair(s, "random", db=6 + s)[1] for s in range(3)]
    others = [pair(20 + s, "lowrank")[0] for s in range(2)]
    sym = sim.pairwise(reps, metric=metric)
    cross = sim.pairwise(reps, others, metric=metric, return_results=True)
    # an angle is compared as its cosine: arccos turns a 1e-16 rounding of a similarity near
    # 1 into ~1e-8 (it did on an AMD EPYC), while the cosine keeps the similarity's accuracy
    same = np.cos if metric == "procrustes_angular" else (lambda v: v)
    for i, a in enumerate(reps):
        for j, b in enumerate(reps):
            assert same(sym[i, j]) == pytest.approx(same(sim.similarity(a, b, metric).value),
                                                    abs=1e-10)
        for j, b in enumerate(others):
            single = sim.similarity(a, b, metric)
            assert same(cross[i, j].value) == pytest.approx(same(single.value), abs=1e-10)
            assert (cross[i, j].k_a, cross[i, j].k_b) == (single.k_a, single.k_b)


def test_adding_a_metric_is_one_function_and_one_entry(monkeypatch):
    """A new basis metric reuses the caches and the one-product-per-block fast path, and its
    entry is all the analysis needs to report, order and label it."""
    from analysis.comparisons import display_key, metric_label, metric_specs

    def max_rho(ca, cb, opts, m=None):
        m = bases.mm(ca.basis.u[:, : ca.k].T, cb.basis.u[:, : cb.k]) if m is None else m
        rho = float(torch.linalg.svdvals(m).max())
        return sim.SimilarityResult("max_rho", rho, ca.k, cb.k, ca.n_tokens)

    entry = sim.Measure(
        "max_rho",
        registry._REGISTRY["cca"].prepare,
        max_rho,
        registry._REGISTRY["cca"].options,
        label="max CCA",
        order=9,
        uses_bases=True,
        invariant=sim.SHAPE,
        truncation=lambda opts: "rank",
    )
    monkeypatch.setitem(registry._REGISTRY, "max_rho", entry)
    x, y = pair(13, "random")
    values = sim.pairwise([x, y], metric="max_rho")
    assert values[0, 1] == pytest.approx(sim.cca(x, y).rhos.max(), abs=1e-10)
    assert sim.shuffled_baseline(x, y, "max_rho", n_shuffles=3).mean < values[0, 1]
    (spec,) = metric_specs(configured.analysis(), ["max_rho"])
    assert (spec.base, spec.variance_rule) == ("max_rho", "rank")
    assert metric_label("max_rho") == "max CCA"
    assert sorted(["max_rho", "cka", "svcca"], key=display_key) == ["svcca", "cka", "max_rho"]


def test_keywords_are_checked_per_metric():
    x, y = pair(14, "random")
    assert sim.pairwise([x, y], metric="mutual_knn", k=3)[0, 1] == pytest.approx(
        naive_mutual_knn(x, y, 3), abs=1e-12
    )
    with pytest.raises(ValueError, match="does not apply to rsa"):
        sim.pairwise([x, y], metric="rsa", variance=0.9)
    with pytest.raises(ValueError, match="does not apply to procrustes"):
        sim.pairwise([x, y], metric="procrustes", k=3)
    with pytest.raises(TypeError, match="unexpected"):
        sim.pairwise([x, y], metric="mutual_knn", neighbours=3)
    with pytest.raises(ValueError, match="metric must be one of"):
        sim.pairwise([x, y], metric="cosine")
    with pytest.raises(ValueError, match="cka_debiased is debiased"):
        sim.pairwise([x, y], metric="cka_debiased", debiased=False)
    assert set(NEW) <= set(sim.metrics())


def test_cka_debiased_name_equals_the_option():
    reps = [pair(s, "random")[s % 2] for s in range(3)]
    by_name = sim.pairwise(reps, metric="cka_debiased", return_results=True)
    by_option = sim.pairwise(reps, metric="cka", debiased=True, return_results=True)
    for a, b in zip(by_name.ravel(), by_option.ravel(), strict=True):
        assert a.value == b.value and a.metric == b.metric == "cka_debiased"
    base = sim.shuffled_baseline(reps[0], reps[1], "cka_debiased", n_shuffles=3)
    same = sim.shuffled_baseline(reps[0], reps[1], "cka", n_shuffles=3, debiased=True)
    np.testing.assert_array_equal(base.values, same.values)


# --------------------------------------------------------------------------- undefined input


def test_undefined_inputs_raise_alone_and_are_nan_in_pairs():
    rng = np.random.default_rng(15)
    x = rng.standard_normal((100, 6))
    zero_row = x.copy()
    zero_row[7] = 0.0
    const_row = x.copy()
    const_row[3] = 2.5
    with pytest.raises(ValueError, match="all-zero row"):
        sim.mutual_knn(zero_row, x)
    with pytest.raises(ValueError, match="constant row"):
        sim.rsa(x, const_row)
    for metric in NEW:
        with pytest.raises(ValueError, match="no variance"):
            sim.similarity(np.ones((100, 6)), x, metric)
    with pytest.warns(RuntimeWarning, match="all-zero row"):
        res = sim.pairwise([x, zero_row, x[::-1]], metric="mutual_knn", return_results=True)
    assert np.isnan(res[1, 0].value) and "all-zero row" in res[0, 1].reason
    assert res[0, 2].reason is None and np.isfinite(res[0, 2].value)
    with pytest.warns(RuntimeWarning, match="baseline is NaN"):
        assert np.isnan(sim.shuffled_baseline(x, const_row, "rsa", n_shuffles=2).mean)
    with pytest.raises(ValueError, match="at least 3 tokens"):
        sim.procrustes(x[:2], x[:2])


# --------------------------------------------------------------------------- speed paths


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.integers(0, 6), min_size=1, max_size=60))
def test_average_ranks_match_scipy(values):
    v = np.asarray(values, dtype=np.float64)
    np.testing.assert_array_equal(rdm._average_ranks(v), scipy.stats.rankdata(v))


BASIS_METRICS = ["cca", "svcca", "pwcca", "cka", "cka_debiased", "procrustes", "procrustes_angular"]


@pytest.mark.parametrize("kind", ["random", "lowrank"])
def test_float32_products_agree_with_float64(kind):
    """float32 products of the bases (float64 accumulation over 8192-token chunks): every
    basis metric within 1e-6 of float64, at 20k tokens (three chunks)."""
    reps = [
        pair(s, "random" if kind == "random" else "lowrank", n=20000, da=48, db=40)[s % 2]
        for s in range(3)
    ]
    if kind == "lowrank":  # full rank, but 99% of the variance in 5 directions
        rng = np.random.default_rng(0)
        reps = [r + 0.05 * rng.standard_normal(r.shape) for r in reps]
    off = ~np.eye(3, dtype=bool)
    for metric in BASIS_METRICS:
        exact = sim.pairwise(reps, metric=metric)
        fast = sim.pairwise(reps, metric=metric, products="float32")
        assert np.abs(fast - exact)[off].max() < 1e-6, metric
        assert np.abs(fast - exact).max() > 0  # really computed in float32
        if metric == "procrustes_angular":  # arccos(1 - δ) ≈ sqrt(2δ): δ ~ 1e-8 reads 1e-4
            assert np.diag(fast).max() < 1e-3
        else:
            assert np.abs(fast - exact).max() < 1e-6, metric
        b64 = sim.shuffled_baseline(reps[0], reps[1], metric, n_shuffles=2)
        b32 = sim.shuffled_baseline(reps[0], reps[1], metric, n_shuffles=2, products="float32")
        np.testing.assert_allclose(b32.values, b64.values, atol=1e-6)
    with pytest.raises(ValueError, match="products must be"):
        sim.pairwise(reps, metric="svcca", products="float16")


def test_blas_routing_matches_numpy(monkeypatch):
    """mm sends Grams to scipy's dsyrk and other products to torch; numpy's matmul (the
    previous route) gives the same numbers to rounding."""
    x, y = pair(16, "random", n=3000)  # distinct canonical correlations: PWCCA's weights
    noise = np.random.default_rng(16).standard_normal(x.shape)  # are then unique
    reps = [x, y, x[:, ::-1] + 0.5 * noise]
    fns = {"svcca": sim.svcca, "pwcca": sim.pwcca, "cka": sim.linear_cka}
    new = {m: sim.pairwise(reps, metric=m) for m in BASIS_METRICS}
    single = {m: f(x, y).value for m, f in fns.items()}

    def numpy_mm(a, b):
        return torch.from_numpy(np.matmul(a.numpy(), b.numpy()))

    # every module of the package that calls mm binds it by name: patch each binding
    original = bases.mm
    bound = [module for name, module in sorted(sys.modules.items())
             if name.split(".")[:2] == ["analysis", "similarity"]
             and getattr(module, "mm", None) is original]
    assert sys.modules["analysis.similarity.bases"] in bound
    for module in bound:
        monkeypatch.setattr(module, "mm", numpy_mm)
    off = ~np.eye(3, dtype=bool)
    for m in BASIS_METRICS:
        old = sim.pairwise(reps, metric=m)
        np.testing.assert_allclose(old[off], new[m][off], atol=1e-12, rtol=0)
        tol = 1e-7 if m == "procrustes_angular" else 1e-12  # arccos near 1: sqrt(2 eps)
        np.testing.assert_allclose(np.diag(old), np.diag(new[m]), atol=tol, rtol=0)
    for m, f in fns.items():
        assert f(x, y).value == pytest.approx(single[m], abs=1e-12)
    g = bases._syrk(torch.from_numpy(x).T, torch.from_numpy(x))
    np.testing.assert_allclose(g.numpy(), x.T @ x, rtol=1e-13, atol=1e-9)
    assert torch.equal(g, g.T)


def test_prepared_caches_give_the_numbers_of_pairwise_and_its_baselines():
    """prepare()/compare_prepared() reuse one cache across calls: same values as pairwise,
    and permuted_values are shuffled_baseline's shuffles."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, 12))
    y = x @ rng.standard_normal((12, 12)) + 0.5 * rng.standard_normal((300, 12))
    for metric, kw in (("svcca", {}), ("cka", {}), ("procrustes", {}), ("mutual_knn", {"k": 5}),
                       ("rsa", {"max_rows": 100})):
        pa, pb = sim.prepare(x, metric, **kw), sim.prepare(y, metric, **kw)
        value = sim.compare_prepared(pa, pb).value
        np.testing.assert_allclose(value, sim.pairwise([x], [y], metric, **kw)[0, 0],
                                   rtol=0, atol=1e-12)
        shuffled = sim.permuted_values(pa, pb, 5, seed=3)
        np.testing.assert_allclose(shuffled, sim.shuffled_baseline(
            x, y, metric, n_shuffles=5, seed=3, **kw).values, rtol=0, atol=1e-12)


def test_metrics_sharing_one_basis_product_give_their_own_numbers():
    """compare_many/permuted_many (one U_aᵀU_b per pair, sliced per metric) equal each metric
    computed alone, to float64 rounding, with the same re-pairings for every metric."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((400, 20)) @ rng.standard_normal((20, 20))
    y = x @ rng.standard_normal((20, 20)) + rng.standard_normal((400, 20))
    ba, bb = sim.basis(x), sim.basis(y)
    specs = [("svcca", {}), ("svcca", {"k": 5}), ("pwcca", {}), ("cka", {}),
             ("cka_debiased", {}), ("procrustes", {}), ("rsa", {"max_rows": 100})]
    pairs = [(sim.prepare(ba, m, **kw), sim.prepare(bb, m, **kw)) for m, kw in specs]
    assert registry._shared_cross(pairs)(pairs[1][0].cache, pairs[1][1].cache) is not None
    together = sim.compare_many(pairs)
    nulls = sim.permuted_many(pairs, 4, seed=5)
    for (pa, pb), res, null in zip(pairs, together, nulls, strict=True):
        alone = sim.similarity(x, y, pa.metric, **dict(specs[pairs.index((pa, pb))][1]))
        assert (res.k_a, res.k_b) == (alone.k_a, alone.k_b)
        np.testing.assert_allclose(res.value, alone.value, rtol=0, atol=1e-12)
        np.testing.assert_allclose(null, sim.permuted_values(pa, pb, 4, seed=5), rtol=0,
                                   atol=1e-12)
