"""Directions to compress a layer's output onto (Raghu et al. 2017 §4.4) and the "within
tolerance" rules that turn a quality curve into k* (directions) or s* (sparsity).

A basis is fitted on *fit* activations X (tokens × D) and returned as (mean [D], U [D, D]):
float64 tensors, U orthonormal, its columns in the order they are to be kept. The layer's
output x is then replaced by ``mean + (x - mean) U_k U_kᵀ`` (:func:`projector`). SVD reduction
and CCA are those of :mod:`analysis.similarity` (the same 99%-variance cut as our SVCCA).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from analysis.similarity.bases import (
    Array,
    basis,
    check_pair,
    n_keep,
    pair_product,
    safe_svd,
)
from analysis.similarity.repeats import check_pair_distinct

# the two compressions, and the role of a compressed model (the compress stage's rows)
PROJECTION, PRUNING = "projection", "pruning"
OVER_TRAINING, REFERENCE = "over training", "reference"


def _complete(q: torch.Tensor) -> torch.Tensor:
    """[q, q⊥]: the orthonormal D × m ``q`` completed to a D × D orthonormal basis (the
    added columns come from a complete QR of q; their order carries no meaning)."""
    d, m = q.shape
    if m == d:
        return q
    full = torch.linalg.qr(q, mode="complete").Q
    return torch.cat([q, full[:, m:]], dim=1)


def _orthonormal(a: torch.Tensor) -> torch.Tensor:
    """Gram-Schmidt of a's columns, in order (QR with the signs fixed so qᵢᵀaᵢ > 0)."""
    q, r = torch.linalg.qr(a)
    sign = torch.sign(torch.diagonal(r))
    sign[sign == 0] = 1.0
    return q * sign


def pca_basis(x: Array) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, U) with U's columns the principal directions of ``x``, by explained variance
    descending; directions beyond x's numerical rank (no variance in the fit data) complete
    U to D columns in no particular order."""
    b = basis(x)
    return b.mean, _complete(b.v)


def _by_variance_within_ties(loadings: torch.Tensor, rho: torch.Tensor, ties: float
                             ) -> torch.Tensor:
    """The loadings (D × m, ρ descending) with each run of canonical correlations within
    ``ties`` of the previous one replaced by the same span's directions in x's variance order
    (the left singular vectors of the run's loadings, scaled by their singular values): among
    equal ρ the SVD's choice of directions is arbitrary (rounding picks it), e.g. every ρ is
    1 for x against itself or an invertible linear map of it."""
    out = loadings.clone()
    start = 0
    for i in range(1, len(rho) + 1):
        if i == len(rho) or float(rho[i - 1] - rho[i]) > ties:
            if i - start > 1:
                u, s, _ = torch.linalg.svd(loadings[:, start:i], full_matrices=False)
                out[:, start:i] = u * s
            start = i
    return out


def svcca_basis(x: Array, y: Array, keep: float = 0.99, ties: float = 1e-9
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, U): the SVCCA directions of ``x`` against ``y`` (the same tokens; y is e.g. the
    same layer at the final checkpoint), by canonical correlation descending.

    As our SVCCA: each side is SVD-reduced to the directions holding ``keep`` of its variance
    (k_x, k_y), then CCA between the reduced spaces. The i-th direction in x's centred space
    is the loading of the i-th canonical variate h_i (unit norm over tokens): X_cᵀh_i, the
    direction along which h_i appears in x (for y = x these are the principal directions);
    U holds these min(k_x, k_y) loadings orthonormalised in order (QR), then the principal
    directions of x's remainder (x projected off them, by variance), then the directions
    where x has no variance, so that every k up to D is defined. The first k_x columns span
    x's top-k_x principal subspace. Canonical correlations within ``ties`` of each other are
    one direction's worth of evidence: within such a run the directions go by x's variance,
    so that against itself (every ρ = 1) the basis is x's principal one. Refuses the inputs
    :func:`analysis.similarity.svcca` refuses (too few tokens or distinct rows for the dims).
    """
    bx, by = basis(x), basis(y)
    check_pair(bx, by, "svcca")
    check_pair_distinct(bx, by, "svcca", None, False)
    kx, ky = n_keep(bx.s, keep), n_keep(by.s, keep)
    p, rho, _ = safe_svd(pair_product(bx, by, kx, ky))  # p: kx × min(kx, ky), ρ descending
    scaled = bx.v * bx.s_dev[: bx.k]  # X_cᵀU_x: the loading of each principal direction
    q1 = _orthonormal(_by_variance_within_ties(scaled[:, :kx] @ p, rho, ties))
    rest = scaled - q1 @ (q1.T @ scaled)  # x's variance left outside the canonical span
    q2 = torch.linalg.svd(rest, full_matrices=False).U[:, : bx.rank - q1.shape[1]]
    return bx.mean, _complete(torch.cat([q1, q2], dim=1))


def random_basis(d: int, seed: int) -> torch.Tensor:
    """A Haar-random orthonormal D × D basis (QR of a standard Gaussian matrix with R's
    diagonal made positive), the same for the same seed (numpy Generator)."""
    if d < 1:
        raise ValueError(f"random_basis needs d >= 1, got {d}")
    g = np.random.default_rng(seed).standard_normal((d, d))
    q, r = np.linalg.qr(g)
    sign = np.sign(np.diag(r))
    sign[sign == 0] = 1.0
    return torch.from_numpy(q * sign)


@dataclass(frozen=True, eq=False)
class Projector:
    """x ↦ mean + (x − mean) P with P = U_k U_kᵀ, for tensors [..., D] in their own dtype and
    device (mean and P are cast once per dtype/device from float64). k = D is the identity up
    to rounding (P = I ± 1e-15 before the cast; x − mean + mean rounds in x's dtype); k = 0
    maps every x to the mean."""

    mean: torch.Tensor
    p: torch.Tensor
    k: int
    _cast: dict = field(default_factory=dict, repr=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.p.shape[0]:
            raise ValueError(
                f"projector for width {self.p.shape[0]} got a tensor of shape {tuple(x.shape)}"
            )
        key = (x.dtype, x.device)
        if key not in self._cast:
            self._cast[key] = (self.mean.to(x), self.p.to(x))
        mean, p = self._cast[key]
        return (x - mean) @ p + mean


def projector(mean: torch.Tensor, u: torch.Tensor, k: int) -> Projector:
    """The projection onto the first ``k`` columns of ``u`` around ``mean`` (0 <= k <= D)."""
    d = u.shape[0]
    if u.ndim != 2 or u.shape[1] != d or tuple(mean.shape) != (d,):
        raise ValueError(f"need mean [D] and U [D, D], got {tuple(mean.shape)}, {tuple(u.shape)}")
    if not 0 <= k <= d:
        raise ValueError(f"k must be in [0, {d}], got {k}")
    uk = u[:, :k].to(torch.float64)
    return Projector(mean.to(torch.float64), uk @ uk.T, int(k))


def k_grid(d: int, base: int = 2) -> list[int]:
    """[1, base, base², …, D]: the powers of ``base`` below D, then D itself."""
    if d < 1 or base < 2:
        raise ValueError(f"k_grid needs d >= 1 and base >= 2, got d={d}, base={base}")
    grid = [1]
    while grid[-1] * base < d:
        grid.append(grid[-1] * base)
    return grid if grid[-1] == d else grid + [d]


def relative_change(quality: float, reference: float, higher_is_better: bool) -> float:
    """Relative change of ``quality`` from ``reference`` in the *bad* direction: positive =
    worse, negative = better (|ref| in the denominator). A zero reference gives 0 for an
    equal quality and ±inf otherwise."""
    worse = reference - quality if higher_is_better else quality - reference
    if reference == 0:
        return 0.0 if worse == 0 else math.copysign(math.inf, worse)
    return worse / abs(reference)


def _within(values: dict, reference: float, tolerance: float, higher_is_better: bool) -> list:
    if not math.isfinite(reference):
        raise ValueError(f"the unprojected/unpruned reference quality is {reference}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    return sorted(
        key
        for key, q in values.items()
        if not math.isnan(q) and relative_change(q, reference, higher_is_better) <= tolerance
    )


def smallest_within(
    values_by_k: dict[int, float], reference: float, tolerance: float, higher_is_better: bool
) -> int | None:
    """k* = the smallest k whose quality is within ``tolerance`` of ``reference`` (the
    unprojected model): :func:`relative_change` <= tolerance, i.e. at most that fraction
    worse; any improvement counts as within. Larger k are not required to stay within; NaN
    qualities never are. None when no k is."""
    ks = _within(values_by_k, reference, tolerance, higher_is_better)
    return ks[0] if ks else None


def largest_within(
    values_by_sparsity: dict[float, float],
    reference: float,
    tolerance: float,
    higher_is_better: bool,
) -> float | None:
    """s* = the largest sparsity whose quality is within ``tolerance`` of ``reference`` (the
    unpruned model), by the same rule as :func:`smallest_within`."""
    ss = _within(values_by_sparsity, reference, tolerance, higher_is_better)
    return ss[-1] if ss else None



def log2_k_star(
    values_by_k: dict[int, float], reference: float, tolerance: float, higher_is_better: bool
) -> float:
    """log2 of k*, interpolated: between the grid's k* and the k below it (outside the
    tolerance, since k* is the smallest within), where the relative change, linear in log2 k,
    crosses ``tolerance``. k* itself when it is the smallest k or its neighbour is NaN; NaN
    when no k is within. Makes k* continuous, so that a seed mean or a difference over
    training is not stuck on the grid's doublings."""
    k = smallest_within(values_by_k, reference, tolerance, higher_is_better)
    if k is None:
        return math.nan
    below = [j for j in values_by_k if j < k]
    if not below or math.isnan(values_by_k[max(below)]):
        return math.log2(k)
    j = max(below)
    r_j = relative_change(values_by_k[j], reference, higher_is_better)
    r_k = relative_change(values_by_k[k], reference, higher_is_better)
    if not math.isfinite(r_j):
        return math.log2(k)
    share = (r_j - tolerance) / (r_j - r_k)
    return math.log2(j) + share * (math.log2(k) - math.log2(j))


def interpolated_s_star(
    values_by_sparsity: dict[float, float],
    reference: float,
    tolerance: float,
    higher_is_better: bool,
) -> float:
    """s*, interpolated: between the grid's s* and the sparsity above it (outside the
    tolerance, since s* is the largest within), where the relative change, linear in
    sparsity, crosses ``tolerance``. s* itself when it is the largest sparsity or its
    neighbour is NaN; NaN when none is within."""
    s = largest_within(values_by_sparsity, reference, tolerance, higher_is_better)
    if s is None:
        return math.nan
    above = [t for t in values_by_sparsity if t > s]
    if not above or math.isnan(values_by_sparsity[min(above)]):
        return s
    t = min(above)
    r_s = relative_change(values_by_sparsity[s], reference, higher_is_better)
    r_t = relative_change(values_by_sparsity[t], reference, higher_is_better)
    if not math.isfinite(r_t):
        return s
    return s + (tolerance - r_s) / (r_t - r_s) * (t - s)
