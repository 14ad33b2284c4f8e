"""The CCA family's distinct-row guard (analysis.similarity.repeats.check_distinct): a
representation whose rows repeat (an embedding's, one per word type) is refused when its
distinct rows - 1 are not more than the directions kept, as the token rule refuses tokens - 1."""

import numpy as np
import pytest

from analysis import similarity as sim

CCA_FAMILY = ("cca", "svcca", "pwcca")


def repeated(n_types: int, copies: int, dims: int = 64, seed: int = 0) -> np.ndarray:
    """``n_types`` distinct rows, each repeated ``copies`` times, in random order."""
    rng = np.random.default_rng(seed)
    types = rng.permutation(np.repeat(np.arange(n_types), copies))
    return rng.standard_normal((n_types, dims))[types]


def rotated(x: np.ndarray, seed: int = 1) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((x.shape[1],) * 2))
    return x @ q


def test_the_registry_says_which_metrics_are_rank_limited():
    for name in sim.metrics():
        entry = sim.measure(name)
        assert entry.rank_limited == (entry.name in CCA_FAMILY)


def test_30_distinct_rows_repeated_to_300_are_refused_at_k50():
    x = repeated(30, 10)  # 300 tokens > 50 + 1: the token rule alone would compute it
    assert sim.basis(x).n_distinct == 30
    for metric in CCA_FAMILY:
        kw = {} if metric == "cca" else {"k": 50}
        with pytest.raises(ValueError, match=r"30 distinct rows among its 300 tokens \(29 <="):
            sim.similarity(x, rotated(x), metric, **kw)
    with pytest.raises(ValueError, match=r"29 <= k=50"):
        sim.svcca(x, rotated(x), k=50)  # the single-pair route checks it too
    with pytest.warns(RuntimeWarning, match="30 distinct rows"):
        cells = sim.pairwise([x, rotated(x)], metric="svcca", k=50, return_results=True)
    assert np.isnan(cells[0, 1].value) and "30 distinct rows" in cells[0, 1].reason


def test_enough_distinct_rows_are_computed():
    """A rotation keeps CCA at 1: computed once distinct rows - 1 > k."""
    x = repeated(100, 3)
    assert sim.svcca(x, rotated(x), k=50).value == pytest.approx(1.0, abs=1e-9)
    res = sim.similarity(sim.basis(x), sim.basis(rotated(x)), "svcca", k=50)
    assert res.value == pytest.approx(1.0, abs=1e-9) and res.k_a == 50


@pytest.mark.parametrize("n_types, refused", [(51, True), (52, False)])
def test_the_boundary_mirrors_the_token_rule(n_types, refused):
    """tokens - 1 <= k is refused; so is distinct rows - 1 <= k (51 types: 50 <= 50)."""
    x, y = repeated(n_types, 4), repeated(n_types, 4, seed=1)
    assert (len(x) - 1 <= 50) is False
    if refused:
        with pytest.raises(ValueError, match=f"{n_types} distinct rows"):
            sim.svcca(x, y, k=50)
    else:
        assert 0.0 <= sim.svcca(x, y, k=50).value <= 1.0


def test_dims_are_the_directions_kept_without_k():
    """As the token rule: a variance cut or the full rank counts the dims (64 here)."""
    x = repeated(60, 5)  # 59 <= 64 dims
    for metric in CCA_FAMILY:
        with pytest.raises(ValueError, match="dims=64"):
            sim.similarity(x, rotated(x), metric)
    assert sim.svcca(x, rotated(x), k=20).value == pytest.approx(1.0, abs=1e-9)


def test_allow_underdetermined_and_other_metrics_compute():
    x = repeated(30, 10)
    assert np.isfinite(sim.svcca(x, rotated(x), k=50, allow_underdetermined=True).value)
    assert sim.linear_cka(x, rotated(x)).value == pytest.approx(1.0, abs=1e-9)


def test_no_variance_is_reported_as_such():
    """One distinct row is a constant representation: the no-variance error, not this one."""
    with pytest.raises(ValueError, match="no variance"):
        sim.svcca(np.ones((300, 8)), repeated(30, 10, dims=8), k=5)
