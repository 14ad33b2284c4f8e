"""Mutual k-NN alignment (Huh et al. 2024): the neighbour-list cache, its compare function and its
registry entry."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from analysis.similarity.bases import (
    BLOCK_BYTES,
    EPS64,
    Array,
    Basis,
    SimilarityResult,
    mm,
    no_variance_error,
    raw_rows,
    same_rows,
    tokens_dims,
    unit_norm_rows,
)
from analysis.similarity.registry import SHAPE, Measure, register, similarity


@dataclass(frozen=True, eq=False)
class _Neighbours:
    """Mutual k-NN cache: each row's k nearest rows by cosine (sorted indices, self excluded)."""

    idx: np.ndarray  # (tokens, k) int64
    n_tokens: int
    n_dims: int

    @property
    def n_perm(self) -> int:
        return self.n_tokens

    def permuted(self, perm: np.ndarray) -> _Neighbours:
        """Neighbours of x[perm]: row i is token perm[i], a neighbour j is relabelled inv[j]."""
        inv = np.empty_like(perm)
        inv[perm] = np.arange(len(perm))
        return dataclasses.replace(self, idx=np.sort(inv[self.idx[perm]], axis=1))


def _knn_indices(xn: torch.Tensor, k: int) -> np.ndarray:
    """k nearest rows of each row by cosine similarity (xn has unit rows), self excluded.
    Similarities within the rounding of a dot product of unit vectors (16·dims·eps) count as
    ties, and ties at the k-th place go to the lower row index (as a stable sort of the
    exact values would): duplicated tokens get the same neighbours whatever the BLAS.
    Sorted indices, (tokens, k) int64."""
    n, d = xn.shape
    tol = 16 * d * EPS64
    out = np.empty((n, k), dtype=np.int64)
    step = max(1, min(n, BLOCK_BYTES // 4 // (8 * n)))
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        sims = mm(xn[lo:hi], xn.T)
        rows = torch.arange(hi - lo, device=sims.device)
        sims[rows, rows + lo] = -torch.inf
        vals, idx = torch.topk(sims, k + 1, dim=1)  # k + 1 <= n - 1, so never the self entry
        idx = idx[:, :k].cpu().numpy()
        tied = (vals[:, k - 1] - vals[:, k] <= tol).cpu().numpy()
        for r in np.flatnonzero(tied):  # resolve ties at the boundary by index
            row = sims[r].cpu().numpy()
            kth = float(vals[r, k - 1])
            sure = np.flatnonzero(row > kth + tol)
            near = np.flatnonzero(np.abs(row - kth) <= tol)
            idx[r] = np.r_[sure, near[: k - len(sure)]]
        out[lo:hi] = np.sort(idx, axis=1)
    return out


def _knn_prepare(x: Array | Basis, opts: dict, name: str) -> _Neighbours:
    n, d = tokens_dims(x, name)
    k = opts["k"]
    if not 1 <= int(k) < n - 1:
        raise ValueError(
            f"mutual_knn needs 1 <= k < tokens - 1, got k={k} for {n} tokens (with k = tokens "
            f"- 1 every row's neighbours are all other rows and the value is 1)"
        )
    rows = raw_rows(x, name)
    if same_rows(rows):
        raise no_variance_error(name, n)
    unit = unit_norm_rows(rows, name, "all-zero", "their cosine similarity")
    return _Neighbours(_knn_indices(unit, int(k)), n, d)


def _knn_compare(ca: _Neighbours, cb: _Neighbours, opts: dict, m=None) -> SimilarityResult:
    """Mean over rows of |N_a(i) ∩ N_b(i)| / k (Huh et al. 2024)."""
    n, k = ca.idx.shape
    hits = 0
    step = max(1, 2**22 // (k * k))
    for lo in range(0, n, step):
        a, b = ca.idx[lo : lo + step], cb.idx[lo : lo + step]
        hits += int((a[:, :, None] == b[:, None, :]).sum())
    return SimilarityResult("mutual_knn", hits / (n * k), ca.n_dims, cb.n_dims, n, n_neighbors=k)


# cosine neighbours of l2-normalised rows: a rotation or a scaling of one side keeps them
register(Measure("mutual_knn", _knn_prepare, _knn_compare, {"k": 10}, label="mutual k-NN",
                 order=6, invariant=SHAPE, truncation=lambda opts: f"k={opts['k']}"))


def mutual_knn(a: Array | Basis, b: Array | Basis, *, k: int = 10) -> SimilarityResult:
    """Mutual k-NN alignment (Huh et al. 2024): rows l2-normalised (not centred, as Huh et al.),
    each row's k nearest other rows by cosine; the mean over rows of |N_a(i) ∩ N_b(i)| / k.

    In [0, 1]; k / (tokens - 1) for unrelated representations. Invariant to positive scaling
    of each row and to orthogonal maps of the units; not to translation (rows are not
    centred) nor to negative scaling. Ties at the k-th neighbour go to the lower row index.
    A Basis input must be full rank; its rows are rebuilt as u s vᵀ + mean.
    """
    return similarity(a, b, "mutual_knn", k=k)
