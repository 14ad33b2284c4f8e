"""Chance level: :func:`shuffled_baseline`, any registered metric after re-pairing the tokens of
one side (the upward bias of CCA-type estimates at a given size), and its :class:`Baseline`."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from analysis.similarity.bases import Array, Basis, as_tensor, check_pair
from analysis.similarity.canonical import google_pwcca
from analysis.similarity.registry import compare_prepared, permuted_values, prepare
from analysis.similarity.repeats import check_pair_distinct


@dataclass(frozen=True, eq=False)
class Baseline:
    """Chance level of a metric: values after shuffling the token pairing of one side."""

    metric: str
    mean: float
    std: float
    values: np.ndarray
    n_tokens: int
    k_a: int
    k_b: int
    reason: str | None = None


def shuffled_baseline(
    a: Array | Basis,
    b: Array | Basis,
    metric: str = "svcca",
    *,
    n_shuffles: int = 20,
    seed: int = 0,
    **kw,
) -> Baseline:
    """Metric after randomly re-pairing the tokens of ``b`` (mean, std over ``n_shuffles``).

    Same (dims, tokens) as the real comparison, so it measures the upward bias of CCA-type
    estimates at that size. The shuffles are :func:`permuted_values`' (the analyses' own):
    each permutes b's cache only. ``kw`` as for :func:`pairwise`; ``compat="google"`` (pwcca)
    recomputes from the raw arrays. NaN (with a warning and ``reason``) where the metric is
    undefined for a or b.
    """
    if n_shuffles < 1:
        raise ValueError(f"n_shuffles must be >= 1, got {n_shuffles}")
    if metric == "pwcca" and kw.get("compat", "paper") == "google":
        return _google_baseline(a, b, n_shuffles, seed, kw)
    pa, pb = prepare(a, metric, "a", **kw), prepare(b, metric, "b", **kw)
    if pa.n_tokens != pb.n_tokens:
        raise ValueError(f"a has {pa.n_tokens} tokens and b has {pb.n_tokens}: both must hold "
                         "the same tokens in the same order")
    real = compare_prepared(pa, pb)
    values = permuted_values(pa, pb, n_shuffles, seed)
    if pa.undefined or pb.undefined or real.reason:  # e.g. mutual_knn, rows repeat unalike
        warnings.warn(f"shuffled_baseline: {real.reason}; the baseline is NaN", RuntimeWarning,
                      stacklevel=2)
        return Baseline(real.metric, np.nan, np.nan, values, pa.n_tokens, real.k_a, real.k_b,
                        real.reason)
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return Baseline(real.metric, float(values.mean()), std, values, pa.n_tokens, real.k_a,
                    real.k_b)


def _google_baseline(a: Array | Basis, b: Array | Basis, n_shuffles: int, seed: int,
                     kw: dict) -> Baseline:
    """The shuffled baseline of google/svcca's PWCCA, recomputed from the arrays."""
    check_pair(a, b, "pwcca", None, kw.get("allow_underdetermined", False))
    check_pair_distinct(a, b, "pwcca", None, kw.get("allow_underdetermined", False))
    bt = as_tensor(b, "b")
    n = int(bt.shape[0])
    rng = np.random.default_rng(seed)
    vals = [google_pwcca(a, bt[torch.from_numpy(rng.permutation(n)).to(bt.device)],
                          kw.get("epsilon", 0.0)) for _ in range(n_shuffles)]
    values = np.array([r.value for r in vals])
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return Baseline(vals[0].metric, float(values.mean()), std, values, n, vals[0].k_a,
                    vals[0].k_b)
