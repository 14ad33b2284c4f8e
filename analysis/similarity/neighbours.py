"""Mutual k-NN alignment (Huh et al. 2024): the neighbour-list cache, its compare function and its
registry entry."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from analysis.similarity.bases import (
    BLOCK_BYTES,
    Array,
    Basis,
    SimilarityResult,
    Undefined,
    mm,
    no_variance_error,
    raw_rows,
    same_rows,
    tokens_dims,
    unit_norm_rows,
)
from analysis.similarity.registry import SHAPE, Measure, register, similarity
from analysis.similarity.repeats import copy_items, dot_tol


@dataclass(frozen=True, eq=False)
class _Neighbours:
    """Mutual k-NN cache over the representation's items (its distinct rows, see
    :func:`~analysis.similarity.repeats.copy_items`): each item's k nearest other items by
    cosine (sorted item indices), and ``labels``, each token's item (items numbered in order
    of their first token)."""

    idx: np.ndarray  # (items, k) int64
    labels: np.ndarray  # (tokens,) int64
    n_tokens: int
    n_dims: int

    @property
    def n_items(self) -> int:
        return len(self.idx)

    @property
    def n_perm(self) -> int:
        return self.n_items

    def permuted(self, perm: np.ndarray) -> _Neighbours:
        """Neighbours with the items re-paired: item i is item perm[i], a neighbour j is
        relabelled inv[j]. The labels (which tokens are copies) stay: a null re-pairs items."""
        inv = np.empty_like(perm)
        inv[perm] = np.arange(len(perm))
        return dataclasses.replace(self, idx=np.sort(inv[self.idx[perm]], axis=1))


def _knn_indices(xn: torch.Tensor, k: int, copies: bool = False
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """k nearest rows of each row by cosine similarity (xn has unit rows), self excluded.
    Similarities within the rounding of a dot product of unit vectors (:func:`dot_tol`) count
    as ties, and ties at the k-th place go to the lower row index (as a stable sort of the
    exact values would): duplicated tokens get the same neighbours whatever the BLAS.
    Sorted indices, (tokens, k) int64; with ``copies`` also each row's first copy (the lowest
    index whose cosine to it is 1 within that rounding; itself if none), from the same pass."""
    n, d = xn.shape
    tol = dot_tol(d)
    out = np.empty((n, k), dtype=np.int64)
    first = np.arange(n) if copies else None
    step = max(1, min(n, BLOCK_BYTES // 4 // (8 * n)))
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        sims = mm(xn[lo:hi], xn.T)
        rows = torch.arange(hi - lo, device=sims.device)
        sims[rows, rows + lo] = -torch.inf
        vals, idx = torch.topk(sims, k + 1, dim=1)  # k + 1 <= n - 1, so never the self entry
        if copies:
            has = np.flatnonzero((vals[:, 0] >= 1.0 - tol).cpu().numpy())
            if has.size:
                same = (sims[torch.as_tensor(has, device=sims.device)] >= 1.0 - tol)
                low = same.to(torch.uint8).argmax(1).cpu().numpy()  # first True
                first[lo + has] = np.minimum(low, lo + has)
        idx = idx[:, :k].cpu().numpy()
        tied = (vals[:, k - 1] - vals[:, k] <= tol).cpu().numpy()
        for r in np.flatnonzero(tied):  # resolve ties at the boundary by index
            row = sims[r].cpu().numpy()
            kth = float(vals[r, k - 1])
            sure = np.flatnonzero(row > kth + tol)
            near = np.flatnonzero(np.abs(row - kth) <= tol)
            idx[r] = np.r_[sure, near[: k - len(sure)]]
        out[lo:hi] = np.sort(idx, axis=1)
    return out, first


def _check_k(k: int, n: int, what: str = "tokens") -> None:
    if not 1 <= int(k) < n - 1:
        raise (ValueError if what == "tokens" else Undefined)(
            f"mutual_knn needs 1 <= k < {what} - 1, got k={k} for {n} {what} (with k = {what} "
            f"- 1 every row's neighbours are all other rows and the value is 1)"
        )


def _knn_prepare(x: Array | Basis, opts: dict, name: str) -> _Neighbours:
    n, d = tokens_dims(x, name)
    k = int(opts["k"])
    _check_k(k, n)
    rows = raw_rows(x, name)
    if same_rows(rows):
        raise no_variance_error(name, n)
    unit = unit_norm_rows(rows, name, "all-zero", "their cosine similarity")
    idx, first = _knn_indices(unit, k, copies=True)
    labels, heads = copy_items(first)
    if len(heads) < n:  # rows repeat: the neighbours among the distinct rows (first copies)
        _check_k(k, len(heads), f"distinct rows of {name}")
        idx, _ = _knn_indices(unit[torch.as_tensor(heads, device=unit.device)], k)
    return _Neighbours(idx, labels, n, d)


def _knn_compare(ca: _Neighbours, cb: _Neighbours, opts: dict, m=None) -> SimilarityResult:
    """Mean over items of |N_a(i) ∩ N_b(i)| / k (Huh et al. 2024); NaN with the reason where
    a and b repeat different rows."""
    n, k = ca.idx.shape
    if not np.array_equal(ca.labels, cb.labels):
        return SimilarityResult("mutual_knn", float("nan"), ca.n_dims, cb.n_dims, ca.n_tokens,
                                n_neighbors=k, reason=_mixed_repeats(ca, cb, k))
    hits = 0
    step = max(1, 2**22 // (k * k))
    for lo in range(0, n, step):
        a, b = ca.idx[lo : lo + step], cb.idx[lo : lo + step]
        hits += int((a[:, :, None] == b[:, None, :]).sum())
    return SimilarityResult("mutual_knn", hits / (n * k), ca.n_dims, cb.n_dims, ca.n_tokens,
                            n_rows_used=n, n_neighbors=k)


def _mixed_repeats(ca: _Neighbours, cb: _Neighbours, k: int) -> str:
    """Why mutual k-NN is not computed for two representations whose rows repeat differently:
    merging the tokens that repeat in both leaves copies in one of them."""
    joint = np.unique(np.c_[ca.labels, cb.labels], axis=0)
    over = []
    for side, c, col in (("a", ca, 0), ("b", cb, 1)):
        copies = np.bincount(joint[:, col], minlength=c.n_items)[joint[:, col]] - 1
        over.append(f"{int((copies >= k).sum())} in {side} ({c.n_items} distinct rows)")
    return (
        f"mutual_knn: a and b repeat different rows of their {ca.n_tokens} tokens: merging "
        f"the tokens that repeat in both leaves {len(joint)} items, some still exact copies "
        f"in one side; items with >= k={k} copies there (their neighbours would be the tie "
        f"rule's pick): {', '.join(over)}. Compare representations whose rows repeat alike "
        f"(e.g. embedding with embedding)"
    )


# cosine neighbours of l2-normalised rows: a rotation or a scaling of one side keeps them
register(Measure("mutual_knn", _knn_prepare, _knn_compare, {"k": 10}, label="mutual k-NN",
                 order=6, invariant=SHAPE, truncation=lambda opts: f"k={opts['k']}"))


def mutual_knn(a: Array | Basis, b: Array | Basis, *, k: int = 10) -> SimilarityResult:
    """Mutual k-NN alignment (Huh et al. 2024): rows l2-normalised (not centred, as Huh et al.),
    each row's k nearest other rows by cosine; the mean over rows of |N_a(i) ∩ N_b(i)| / k.

    Repeated rows (an embedding's, one per word type): the metric runs over items, the
    distinct rows, where tokens i and j are one item only if their rows are copies (cosine 1
    within rounding) in BOTH a and b; ``n_rows_used`` says how many. Otherwise a row with k
    or more copies would have only copies as neighbours, picked by the tie rule. Where a and b
    repeat the same tokens (embedding vs embedding) the items are each side's distinct rows
    (word types) and the shuffled null re-pairs items. Where they repeat different tokens
    (embedding vs a contextual layer), merging leaves copies in one side and the value is NaN
    with the reason: those tokens are one point there, so no token-level neighbourhood exists.

    In [0, 1]; k / (items - 1) for unrelated representations. Invariant to positive scaling
    of each row and to orthogonal maps of the units; not to translation (rows are not
    centred) nor to negative scaling. Other ties at the k-th neighbour go to the lower index.
    A Basis input must be full rank; its rows are rebuilt as u s vᵀ + mean.
    """
    return similarity(a, b, "mutual_knn", k=k)
