"""analysis.comparisons.compare on representations whose rows repeat (an embedding's, one row
per word type): NA rows naming the count for the CCA family, the whole sample and a tag-like
subset alike; mutual k-NN on the distinct rows; the other metrics computed."""

import configured
import numpy as np
import pytest

from analysis.comparisons import compare, full_basis, metric_specs

CCA_ROWS = {"svcca", "svcca_k50", "pwcca"}


def embedding(n_types: int, types: np.ndarray, dims: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n_types, dims))[types]


def rotation(dims: int, seed: int = 1) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dims, dims)))
    return q


def rows_by_metric(a, b, shuffles: int = 0) -> dict[str, dict]:
    settings = configured.analysis(fixed_k=[50], knn_k=5)
    specs = metric_specs(settings, ["svcca", "svcca_k", "pwcca", "cka", "mutual_knn", "rsa"])
    return {row["metric"]: row for row in compare(a, b, specs, shuffles, 0)}


def test_repeated_rows_give_cca_na_rows_naming_the_count():
    """30 word types repeated to 300 tokens: the token rule (299 > 64) would compute every
    CCA metric; the rows are NA and say 30 distinct rows. Permuting and scaling the units
    keeps CKA, mutual k-NN (on the 30 types) and RSA at 1."""
    rng = np.random.default_rng(2)
    types = rng.permutation(np.repeat(np.arange(30), 10))
    x = embedding(30, types)
    moved = 3.0 * x[:, rng.permutation(64)]
    rows = rows_by_metric(full_basis(x, "embed@0"), full_basis(moved, "embed@9"), shuffles=2)
    for name in CCA_ROWS:
        assert np.isnan(rows[name]["value"]) and np.isnan(rows[name]["baseline"])
        assert "30 distinct rows among its 300 tokens (29 <=" in rows[name]["na_reason"]
        assert rows[name]["na_reason"].startswith("embed@0")
    assert "k=50" in rows["svcca_k50"]["na_reason"]
    for name in ("cka", "mutual_knn", "rsa"):
        assert rows[name]["na_reason"] is None
        assert rows[name]["value"] == pytest.approx(1.0, abs=1e-9)
    assert rows["mutual_knn"]["n_rows_used"] == 30
    assert np.isfinite(rows["mutual_knn"]["baseline"])


def test_enough_distinct_rows_are_computed():
    """200 types (each 3 tokens; 199 > 64 dims): every CCA metric is 1 under a rotation."""
    types = np.random.default_rng(3).permutation(np.repeat(np.arange(200), 3))
    x = embedding(200, types)
    rows = rows_by_metric(full_basis(x), full_basis(x @ rotation(64)))
    for name in CCA_ROWS:
        assert rows[name]["na_reason"] is None
        assert rows[name]["value"] == pytest.approx(1.0, abs=1e-9)
    assert rows["svcca_k50"]["k_a"] == 50


def test_a_subset_of_few_types_is_refused_where_the_whole_sample_is_not():
    """per_tag's subsets go through compare: the tokens of one tag (here 40 of 300 types,
    300 tokens) give the NA rows, naming the subset's count."""
    rng = np.random.default_rng(4)
    types = rng.permutation(np.repeat(np.arange(300), 4))
    x = embedding(300, types)
    y = x @ rotation(64)
    whole = rows_by_metric(full_basis(x), full_basis(y))
    assert all(whole[name]["na_reason"] is None for name in CCA_ROWS)
    tag = np.flatnonzero(types < 40)[:150]  # a tag whose tokens have few word types
    n_types = len(np.unique(types[tag]))
    assert n_types - 1 <= 50
    subset = rows_by_metric(full_basis(x[tag], "DET"), full_basis(y[tag], "DET"))
    for name in CCA_ROWS:
        assert f"{n_types} distinct rows among its {len(tag)} tokens" in subset[name]["na_reason"]


def test_rows_repeating_in_one_side_only_give_a_knn_na_row():
    """Embedding vs a contextual layer (every row distinct): mutual k-NN is NA with the
    reason, the whole-sample metrics that do not depend on ties are computed."""
    types = np.random.default_rng(5).permutation(np.repeat(np.arange(200), 3))
    x = embedding(200, types)
    y = np.random.default_rng(6).standard_normal((600, 64))
    rows = rows_by_metric(full_basis(x), full_basis(y))
    assert np.isnan(rows["mutual_knn"]["value"])
    assert "repeat different rows" in rows["mutual_knn"]["na_reason"]
    assert rows["cka"]["na_reason"] is None and rows["svcca_k50"]["na_reason"] is None
