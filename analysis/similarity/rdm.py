"""Representational similarity analysis: the ranked-RDM cache (rows subsampled above
``max_rows``), the Spearman comparison and its registry entry."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

from analysis.similarity.bases import (
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
from analysis.similarity.registry import Measure, register, similarity
from analysis.similarity.repeats import copy_items, dot_tol, first_copies


@dataclass(frozen=True, eq=False)
class _RankedRDM:
    """RSA cache: centred average ranks of the RDM's upper triangle (i < j, row-major) over
    the rows used. The ranks are multiples of 1/2, exact in float32 below 2^24 entries."""

    ranks: np.ndarray
    norm: float
    rows: np.ndarray | None  # token indices used (None: all)
    n_tokens: int
    n_dims: int

    @property
    def n_perm(self) -> int:
        return self.n_tokens if self.rows is None else len(self.rows)

    def permuted(self, perm: np.ndarray) -> _RankedRDM:
        """RDM of the rows re-paired by ``perm`` (over the rows used): entry (i, j) becomes
        (perm[i], perm[j]); ranks are permuted with the entries."""
        n = self.n_perm
        i, j = _upper_triangle(n)
        p, q = perm[i], perm[j]
        lo, hi = np.minimum(p, q), np.maximum(p, q)
        flat = lo * n - lo * (lo + 1) // 2 + hi - lo - 1  # position of (lo, hi), lo < hi
        return dataclasses.replace(self, ranks=self.ranks[flat])


@functools.lru_cache(maxsize=4)
def _upper_triangle(n: int) -> tuple[np.ndarray, np.ndarray]:
    """np.triu_indices(n, 1), computed once per n: about half the time of each permutation
    of an RSA null went to recomputing it."""
    return np.triu_indices(n, 1)


def rsa_rows(n_tokens: int, max_rows: int | None, sample_seed: int) -> np.ndarray | None:
    """Token indices RSA uses: all (None) if n_tokens <= max_rows, else the sorted sample
    ``np.random.default_rng(sample_seed).choice(n_tokens, max_rows, replace=False)``."""
    if max_rows is None or n_tokens <= max_rows:
        return None
    rng = np.random.default_rng(sample_seed)
    return np.sort(rng.choice(n_tokens, size=int(max_rows), replace=False))


def _average_ranks(v: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank (= scipy.stats.rankdata, which sorts
    stably and is 5x slower on millions of RDM entries)."""
    order = np.argsort(v)
    ranks = np.empty(v.size)
    ranks[order] = np.arange(1, v.size + 1, dtype=np.float64)
    ties = v[order[1:]] == v[order[:-1]]
    if ties.any():  # runs of equal values share the mean of their ranks
        starts = np.flatnonzero(np.r_[True, ~ties])
        run = np.cumsum(np.r_[True, ~ties]) - 1
        counts = np.diff(np.r_[starts, v.size])
        ranks[order] = (starts + (counts + 1) / 2.0)[run]
    return ranks


def _rsa_prepare(x: Array | Basis, opts: dict, name: str) -> _RankedRDM:
    n, d = tokens_dims(x, name)
    rows = rsa_rows(n, opts["max_rows"], opts["sample_seed"])
    r = raw_rows(x, name, rows)
    if r.shape[0] < 3:
        raise ValueError(f"rsa needs at least 3 rows (tokens), got {r.shape[0]}")
    if same_rows(r):
        raise no_variance_error(name, n)
    z = r - r.mean(1, keepdim=True)  # Pearson correlation over the units
    z = unit_norm_rows(z, name, "constant", "their Pearson correlation")
    sims, tol = mm(z, z.T), dot_tol(d)
    labels, heads = copy_items(first_copies(sims, tol))
    first = heads[labels]  # each row's first copy (itself if none): entries of copies are
    i, j = _upper_triangle(r.shape[0])  # read from one place, the upper triangle of sims,
    lo, hi = np.minimum(first[i], first[j]), np.maximum(first[i], first[j])  # so they tie
    rdm = 1.0 - sims.cpu().numpy()[lo, hi]
    rdm[np.abs(rdm) <= tol] = 0.0  # ±ulps around 0 (copies) would split ties
    ranks = _average_ranks(rdm)
    ranks -= (ranks.size + 1) / 2.0
    norm = float(np.sqrt(ranks @ ranks))
    if norm == 0:
        raise Undefined(f"every entry of {name}'s RDM is equal: the rank correlation is 0/0")
    if ranks.size < 2**24:
        ranks = ranks.astype(np.float32)  # exact: multiples of 1/2 below 2^23
    return _RankedRDM(ranks, norm, rows, n, d)


def _rsa_compare(ca: _RankedRDM, cb: _RankedRDM, opts: dict, m=None) -> SimilarityResult:
    """Spearman correlation of the two RDMs' upper triangles (Pearson of the ranks)."""
    dot = float(np.dot(ca.ranks.astype(np.float64), cb.ranks.astype(np.float64)))
    return SimilarityResult(
        "rsa",
        dot / (ca.norm * cb.norm),
        ca.n_dims,
        cb.n_dims,
        ca.n_tokens,
        n_rows_used=ca.n_perm,
    )


# Pearson correlation between rows across units: neither a rotation nor a scaling keeps it
register(Measure("rsa", _rsa_prepare, _rsa_compare, {"max_rows": 2000, "sample_seed": 0},
                 label="RSA (Spearman)", order=7,
                 truncation=lambda opts: f"rows<={opts['max_rows']}"))


def rsa(
    a: Array | Basis, b: Array | Basis, *, max_rows: int | None = 2000, sample_seed: int = 0
) -> SimilarityResult:
    """Representational similarity analysis: RDM = 1 - Pearson correlation between rows
    (tokens, correlated over units); the Spearman correlation of the two RDMs' upper
    triangles. Above ``max_rows`` tokens, on the rows :func:`rsa_rows` picks (the same on
    both sides; ``n_rows_used`` in the result). In [-1, 1]; ~0 for unrelated data.

    Invariant to per-row positive affine maps x_i -> a_i x_i + b_i (a_i > 0, b_i added to
    every unit), to permutations of the units and to any orthogonal map that fixes the
    all-ones direction; not to general rotations or to adding a vector to every row.

    Repeated rows (an embedding's) tie exactly, whatever the row order: distances within the
    rounding of a dot product of unit vectors of 0 (|d| <= 16·dims·eps,
    :func:`~analysis.similarity.repeats.dot_tol`; relative to the unit rows' norms) are set
    to exactly 0 before ranking (rounding gave them ±1e-16 and split their ties), and rows
    that are copies within that rounding take every distance from the first of them, so a
    copy's distances to other rows tie with the original's.
    """
    return similarity(a, b, "rsa", max_rows=max_rows, sample_seed=sample_seed)
