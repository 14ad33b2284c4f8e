"""Chance level: :func:`shuffled_baseline`, any registered metric after re-pairing the tokens of
one side (the upward bias of CCA-type estimates at a given size), and its :class:`Baseline`."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from analysis.similarity.bases import Array, Basis, _as_tensor, _check_pair, _shape
from analysis.similarity.canonical import _pwcca_google
from analysis.similarity.registry import _cache, _Dead, _resolve, _undefined_result


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
    estimates at that size. Caches are computed once; each shuffle
    permutes b's cache: the rows of its basis, its rows and neighbour labels (mutual_knn),
    its RDM's rows and columns (rsa; over the rows used when rsa subsamples). ``kw`` as for
    :func:`pairwise`; ``compat="google"`` (pwcca) recomputes from the raw arrays. NaN (with
    a warning and ``reason``) where the metric is undefined for a or b.
    """
    if n_shuffles < 1:
        raise ValueError(f"n_shuffles must be >= 1, got {n_shuffles}")
    rng = np.random.default_rng(seed)
    if metric == "pwcca" and kw.get("compat", "paper") == "google":
        _check_pair(a, b, "pwcca", None, kw.get("allow_underdetermined", False))
        bt = _as_tensor(b, "b")
        n = int(bt.shape[0])
        vals = [
            _pwcca_google(
                a, bt[torch.from_numpy(rng.permutation(n)).to(bt.device)], kw.get("epsilon", 0.0)
            )
            for _ in range(n_shuffles)
        ]
    else:
        measure, opts = _resolve(metric, kw)
        (na, _), (n, _) = _shape(a, "a"), _shape(b, "b")
        if na != n:
            raise ValueError(
                f"a has {na} tokens and b has {n}: both must hold the same tokens in the same order"
            )
        ca, cb = _cache(measure, a, opts, "a"), _cache(measure, b, opts, "b")
        if isinstance(ca, _Dead) or isinstance(cb, _Dead):
            res = _undefined_result(measure, ca, cb)
            warnings.warn(
                f"shuffled_baseline: {res.reason}; the baseline is NaN",
                RuntimeWarning,
                stacklevel=2,
            )
            nan = np.full(n_shuffles, np.nan)
            return Baseline(measure.name, np.nan, np.nan, nan, n, res.k_a, res.k_b, res.reason)
        vals = [
            measure.compare(ca, cb.permuted(rng.permutation(cb.n_perm)), opts, None)
            for _ in range(n_shuffles)
        ]
    values = np.array([r.value for r in vals])
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return Baseline(vals[0].metric, float(values.mean()), std, values, n, vals[0].k_a, vals[0].k_b)
