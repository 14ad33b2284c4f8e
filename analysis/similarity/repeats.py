"""Repeated rows. An embedding's rows are a function of the word type, so its tokens repeat
(NUMERICS.md §3.8): the CCA family refuses a representation whose distinct rows cannot carry
the directions it keeps (:func:`check_distinct`); mutual k-NN merges copies (neighbours.py) and
RSA ties them exactly (rdm.py), both finding copies within the rounding of a dot product of
unit rows (:func:`dot_tol`, :func:`first_copies`, :func:`copy_items`)."""

from __future__ import annotations

import numpy as np
import torch

from analysis.similarity.bases import EPS64, Array, Basis, Undefined, as_tensor, count_distinct


def dot_tol(dims: int) -> float:
    """Rounding bound of a float64 dot product of two unit vectors of ``dims`` entries
    (16·dims·eps; measured: up to 16 eps at 512 dims for exact copies): cosines or Pearson
    correlations that differ by less are the same number."""
    return 16 * int(dims) * EPS64


def n_distinct(x: Array | Basis, name: str) -> int | None:
    """Distinct rows of ``x`` (a Basis: those of the input it was built from; None if unknown)."""
    if isinstance(x, Basis):
        return x.n_distinct
    return count_distinct(as_tensor(x, name))


def check_distinct(
    distinct: int | None,
    n_tokens: int,
    dims: int,
    k: int | None,
    metric: str,
    name: str,
    allow: bool = False,
) -> None:
    """Refuse a CCA-family metric when distinct rows - 1 <= the directions it keeps.

    Mirrors the token rule (bases.check_tokens): the directions kept are the dims, or
    min(k, dims) at a fixed k, and distinct rows - 1 bounds the centred rank as tokens - 1
    does. Rows repeat in an embedding (one per word type): with D distinct rows the data span
    at most D - 1 directions whatever the token count, so a metric keeping that many rests on
    D points, and is 1 for any two representations that repeat the same rows.
    """
    used = int(dims) if k is None else min(int(k), int(dims))
    if allow or distinct is None or distinct <= 1 or distinct - 1 > used:
        return  # one distinct row: no variance, which the metrics refuse as such
    what = f"k={used}" if k is not None else f"dims={used}"
    raise Undefined(
        f"{name or 'the representation'} has {distinct} distinct rows among its {n_tokens} "
        f"tokens ({distinct - 1} <= {what}): repeated rows (an embedding's: one per word type) "
        f"span at most distinct rows - 1 = {distinct - 1} directions, so {metric} would keep "
        f"all of them (every canonical correlation 1 against rows that repeat alike). Use "
        f"k < {distinct - 1} or more word types; allow_underdetermined=True computes it anyway."
    )


def check_pair_distinct(
    a: Array | Basis, b: Array | Basis, metric: str, k: int | None, allow: bool
) -> None:
    """:func:`check_distinct` for both sides of a single-pair call (a side with one distinct
    row has no variance: the metric refuses the pair as such)."""
    if allow:
        return
    sides = [(x, name, n_distinct(x, name)) for x, name in ((a, "a"), (b, "b"))]
    if any(c is not None and c <= 1 for _, _, c in sides):
        return
    for x, name, distinct in sides:
        n, d = (x.n_tokens, x.n_dims) if isinstance(x, Basis) else tuple(as_tensor(x, name).shape)
        check_distinct(distinct, int(n), int(d), k, metric, name)


def first_copies(sims: torch.Tensor, tol: float) -> np.ndarray:
    """Each row's first copy from its similarities to every row (unit rows, self included):
    the lowest index whose similarity is 1 within ``tol`` (itself if none)."""
    same = sims >= 1.0 - tol
    same.fill_diagonal_(True)
    return same.to(torch.uint8).argmax(1).cpu().numpy()  # argmax: the first maximum


def copy_items(first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's item and each item's first row, from each row's first copy: items are the
    groups of copies, numbered in order of their first row (the same numbering for any two
    representations whose rows repeat alike). Chains (a copy of a copy that is not one
    itself, possible only at the rounding limit) are followed to their lowest index."""
    while True:
        nxt = first[first]
        if np.array_equal(nxt, first):
            break
        first = nxt
    heads = np.unique(first)  # sorted: the items in order of their first row
    return np.searchsorted(heads, first), heads
