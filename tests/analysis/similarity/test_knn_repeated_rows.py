"""analysis.similarity.neighbours on repeated rows: mutual k-NN over the rows distinct in both
representations, NaN with the reason where they repeat different rows."""

import numpy as np
import pytest

from analysis import similarity as sim


def naive_mutual_knn(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """Cosine neighbours without the row itself, mean |∩| / k (distinct rows: no ties)."""
    def neighbours(z):
        zn = z / np.linalg.norm(z, axis=1, keepdims=True)
        cos = zn @ zn.T
        np.fill_diagonal(cos, -np.inf)
        return [set(np.argsort(-row, kind="stable")[:k]) for row in cos]

    a, b = neighbours(x), neighbours(y)
    return float(np.mean([len(a[i] & b[i]) / k for i in range(len(x))]))


def repeated(seed: int, n_types: int = 40, dims: int = 8):
    """Two related type-level representations and tokens repeating each type 1..15 times
    (many with more than k copies), in random order."""
    rng = np.random.default_rng(seed)
    tx = rng.standard_normal((n_types, dims))
    ty = tx @ rng.standard_normal((dims, dims)) + 0.7 * rng.standard_normal((n_types, dims))
    types = rng.permutation(np.repeat(np.arange(n_types), rng.integers(1, 16, n_types)))
    return tx, ty, types


@pytest.mark.parametrize("seed", range(3))
def test_repeated_rows_give_the_metric_on_the_distinct_rows(seed):
    """By construction: every token of a type is one item in both, so the value is mutual
    k-NN on the types; row order, copies within rounding (rebuilt from bases) do not matter."""
    tx, ty, types = repeated(seed)
    k = 5
    res = sim.mutual_knn(tx[types], ty[types], k=k)
    order = types[np.sort(np.unique(types, return_index=True)[1])]  # by first token
    assert res.value == sim.mutual_knn(tx[order], ty[order], k=k).value
    assert res.value == pytest.approx(naive_mutual_knn(tx, ty, k), abs=1e-15)
    assert res.n_rows_used == len(tx) and res.n_tokens == len(types)
    p = np.random.default_rng(seed).permutation(len(types))
    assert sim.mutual_knn(tx[types[p]], ty[types[p]], k=k).value == res.value
    rebuilt = sim.mutual_knn(sim.basis(tx[types]), sim.basis(ty[types]), k=k)
    assert rebuilt.value == res.value


def test_repeated_rows_null_re_pairs_the_items():
    """Chance level over items: k / (items - 1), not k / (tokens - 1)."""
    tx, ty, types = repeated(0)
    null = sim.shuffled_baseline(tx[types], ty[types], "mutual_knn", n_shuffles=400, k=5)
    assert null.mean == pytest.approx(5 / (len(tx) - 1), abs=0.01)


def test_rows_repeating_in_one_side_only_are_not_computed():
    """An embedding (types) vs a contextual layer (every token distinct): NaN, and the reason
    counts the tokens whose type has more than k copies (their neighbours would be ties)."""
    tx, _, types = repeated(1)
    k = 5
    other = np.random.default_rng(2).standard_normal((len(types), 8))
    res = sim.mutual_knn(tx[types], other, k=k)
    assert np.isnan(res.value)
    counts = np.bincount(types)
    many = int(counts[counts > k].sum())
    assert f"{many} in a ({len(tx)} distinct rows)" in res.reason
    assert f"0 in b ({len(types)} distinct rows)" in res.reason
    cells = sim.pairwise([tx[types]], [other], metric="mutual_knn", k=k, return_results=True)
    assert np.isnan(cells[0, 0].value) and cells[0, 0].reason == res.reason
    with pytest.warns(RuntimeWarning, match="repeat different rows"):
        null = sim.shuffled_baseline(tx[types], other, "mutual_knn", n_shuffles=3, k=k)
    assert np.isnan(null.mean) and null.reason == res.reason


def test_too_few_distinct_rows_for_k():
    rng = np.random.default_rng(3)
    types = np.repeat(np.arange(8), 20)
    x, y = rng.standard_normal((8, 4))[types], rng.standard_normal((8, 4))[types]
    with pytest.raises(ValueError, match="k < distinct rows of a - 1, got k=10 for 8"):
        sim.mutual_knn(x, y, k=10)
    assert sim.mutual_knn(x, y, k=3).n_rows_used == 8
