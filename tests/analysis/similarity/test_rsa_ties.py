"""analysis.similarity.rdm on repeated rows: copies tie exactly, as in exact arithmetic."""

import numpy as np
import pytest
import scipy.stats

from analysis import similarity as sim


def repeated(seed: int, n_types: int = 60, n: int = 300, dims: int = 37):
    """Two related representations of ``n`` tokens whose rows are a function of the word type
    (as an embedding's), and the types; 37 dims so that rounding gives copies ±ulps."""
    rng = np.random.default_rng(seed)
    types = rng.integers(0, n_types, n)
    tx = 3 * rng.standard_normal((n_types, dims)) + 5 * rng.standard_normal(dims)
    ty = tx @ rng.standard_normal((dims, dims)) + rng.standard_normal((n_types, dims))
    return tx[types], ty[types], types


def exact_tie_rsa(x: np.ndarray, y: np.ndarray, types: np.ndarray) -> float:
    """float64 reference with exact ties: each RDM from the distinct rows (one per type,
    made exactly symmetric), expanded to the tokens; same-type entries exactly 0."""
    kinds, first, pos = np.unique(types, return_index=True, return_inverse=True)
    iu = np.triu_indices(len(types), 1)
    rdms = []
    for z in (x, y):
        t = np.triu(1.0 - np.corrcoef(z[first]), 1)
        rdms.append((t + t.T)[np.ix_(pos, pos)][iu])
    return scipy.stats.spearmanr(*rdms).statistic


@pytest.mark.parametrize("seed", range(3))
def test_rsa_on_repeated_rows_equals_exact_tie_version(seed):
    """Rounding gave copies distances of ±1e-16 that split their ties (~3e-6 off before)."""
    x, y, types = repeated(seed)
    ref = exact_tie_rsa(x, y, types)
    assert sim.rsa(x, y, max_rows=None).value == pytest.approx(ref, abs=1e-12)
    # the rows as a comparison passes them: rebuilt from full-rank bases (copies within ulps)
    rebuilt = sim.rsa(sim.basis(x), sim.basis(y), max_rows=None).value
    assert rebuilt == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_rsa_on_repeated_rows_does_not_depend_on_row_order(seed):
    x, y, _ = repeated(seed)
    before = sim.rsa(x, y, max_rows=None).value
    for p in np.random.default_rng(seed).permuted(np.tile(np.arange(len(x)), (3, 1)), axis=1):
        assert sim.rsa(x[p], y[p], max_rows=None).value == pytest.approx(before, abs=1e-12)


def test_rsa_distinct_rows_unchanged():
    """No copies: the RDM is the plain one (scipy's Spearman on 1 - Pearson)."""
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((120, 9)), rng.standard_normal((120, 7))
    iu = np.triu_indices(120, 1)
    ref = scipy.stats.spearmanr((1 - np.corrcoef(x))[iu], (1 - np.corrcoef(y))[iu]).statistic
    assert sim.rsa(x, y, max_rows=None).value == pytest.approx(ref, abs=1e-12)
