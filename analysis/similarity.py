"""Representation similarity on tokens × dims arrays: CCA, SVCCA, PWCCA, linear CKA (biased
and debiased), orthogonal Procrustes (similarity and angular distance), mutual k-NN and RSA.

Every metric is an entry of a small registry (:class:`Measure`: what one representation
caches, how two caches compare), so :func:`pairwise`, :func:`shuffled_baseline` and
:func:`similarity` take any of them by name (:func:`metrics`); adding one is one compare
function and one :func:`register` call. The CCA family, CKA and Procrustes cache a
:class:`Basis` and share the one-product-per-block fast path; mutual k-NN caches each row's
neighbours, RSA the ranked RDM.

Conventions (measured failure modes in ../shared/NUMERICS.md):

- Inputs are **tokens × dims** (rows are tokens, columns are units), numpy arrays or torch
  tensors. Torch tensors stay on their device for the heavy products; results come back as
  numpy/float on the CPU.
- Every unit is centred over tokens (twice, so huge constant offsets leave no residue; units
  that are exactly constant become exactly zero), and everything is accumulated in float64
  whatever the input dtype.
- Subspaces are truncated at the numerical rank: singular values below ``rtol * s_max`` count
  as zero. The default (``rtol=None``) follows the input's precision and size,
  :func:`default_rtol`: 4e-5..1e-4 for float32 input of 64..512 dims (it drops the null
  direction of LayerNorm outputs, which float32 rounding lifts to ~1e-7..3e-6), about
  1e-13..1e-11 for float64. The cut used is reported (``Basis.rtol``,
  ``SimilarityResult.rtol_a/rtol_b``). Dead, constant and duplicated units are therefore
  harmless. Canonical correlations are clipped to [0, 1].
- Routes (``method=``): "gram" eigendecomposes the float64 dims × dims Gram blocks (fast,
  bound by matrix products; it cannot resolve directions below sqrt(max(tokens, dims)·eps)
  ·s_max, so it cuts there at the least), "svd" takes a tall SVD of each side (most
  accurate), and "auto" (default) uses the Gram route unless a kept direction is weaker than
  1e-4·s_max, the spectrum has values the Gram route cannot resolve above the cut, or
  tokens <= dims. :class:`GramAccumulator` is the same Gram route, streamed.
- A representation's orthonormal token-space basis (:class:`Basis`) is computed once and can
  be reused for every pair: a pair then costs one ``k_a × tokens × k_b`` product plus a small
  SVD. :func:`pairwise` does this for lists of representations.
- CCA-family metrics refuse tokens - 1 <= dims used (after centring the rank is at most
  tokens - 1, so every canonical correlation is then 1, even for independent noise) unless
  ``allow_underdetermined=True``; CCA stays biased upward while tokens are only a few times
  the dims, so compare with :func:`shuffled_baseline` at the same (dims, tokens). CKA needs
  at least 3 tokens (4 debiased): with 2 it is 1 for any data.
- A representation without variance (every unit constant over the tokens, e.g. all zero)
  has no similarity to anything: the single-pair functions raise ValueError;
  :func:`pairwise` and :func:`shuffled_baseline` put NaN in its cells, say why in
  ``SimilarityResult.reason`` and warn, so that one dead layer does not void a matrix.

Values are similarities in [0, 1] (debiased CKA and RSA can be negative), except
``procrustes_angular``, a distance in [0, π/2]; ``SimilarityResult.kind`` says which.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.linalg
import scipy.linalg.blas
import torch

Array = np.ndarray | torch.Tensor
Rule = Literal["s2", "s"]

# rtol=None everywhere means default_rtol(tokens, dims, input dtype).
DEFAULT_RTOL = None
# default_rtol's input-precision term is _RTOL_C * sqrt(min(tokens, dims)) * eps(input dtype).
# Why this form: rounding each input value to its dtype moves it by <= eps/2 relative, so the
# perturbation E of the centred matrix has ||E||_2 <= ||E||_F <= eps/2 ||X||_F
# <= eps/2 sqrt(min(tokens, dims)) s_max, and by Weyl's inequality no singular value below
# that is distinguishable from zero. It does not grow with the token count (E's norm and
# s_max both grow like sqrt(tokens)); max(tokens, dims) * eps, the LAPACK/numpy matrix_rank
# convention, bounds the SVD's own rounding, which in float64 is the second term, but with
# the float32 eps it would cut at 2.4e-3 at 20k tokens: above genuine directions of ordinary
# layers (6.5e-4 in test_layernorm_null_direction_dropped_consistently). Why _RTOL_C = 40:
# float32 LayerNorm outputs have a null direction (1/γ; each normalised row sums to zero)
# that rounding lifts to s/s_max ≈ 0.4 eps · (per-token offset of the input / its spread),
# whatever the dims and tokens: 2.5e-7 (offset 5 σ), 1.5e-6 (30 σ), 3.1e-6 (60 σ) measured;
# 5e-8 .. 3e-6 (up to 25 eps) in real layers, where LayerNorm subtracts the large row means
# of residual streams. C = 40 puts the cut at 1.9e-5 (16 dims), 3.8e-5 (64), 6.7e-5 (200),
# 1.1e-4 (512): 6-35x above the worst real case; a genuine direction below it holds < 1e-8
# of the top direction's variance. Float16/bfloat16 inputs are capped at _RTOL_MAX: at that
# precision rounding reaches a few % of s_max and no cut separates it from signal.
_RTOL_C = 40.0
_RTOL_MAX = 1e-2
# The Gram route (eigh of the dims × dims Gram) is used only when every kept direction has
# s >= _GRAM_SAFE * s_max: its error grows like eps * (s_max / s)^2, i.e. <= ~2e-8 here.
_GRAM_SAFE = 1e-4
# pairwise() concatenates the cached bases into blocks of at most this many bytes.
_BLOCK_BYTES = 256 * 2**20

_CCA_FAMILY = ("cca", "svcca", "pwcca")


@dataclass(frozen=True, eq=False)
class Basis:
    """Centred, orthonormal token-space basis of one representation (an SVD x_c = U S Vᵀ).

    ``u`` (tokens × k) and ``v`` (dims × k) hold the leading ``k`` directions in float64 on the
    input's device; ``s`` holds every singular value above the numerical rank (CPU, float64),
    so a truncation rule can be re-applied. ``rtol`` is the rank cut that was applied
    (relative to s_max), ``mean`` the per-unit means that centring removed (float64, dims),
    so that a full-rank basis still describes the raw rows: x ≈ u s vᵀ + mean.
    """

    u: torch.Tensor
    v: torch.Tensor
    s: np.ndarray
    s_dev: torch.Tensor = dataclasses.field(repr=False)
    rank: int
    n_tokens: int
    n_dims: int
    method: str
    rtol: float = float("nan")
    mean: torch.Tensor | None = dataclasses.field(default=None, repr=False)

    @property
    def k(self) -> int:
        """Number of directions stored in ``u`` and ``v``."""
        return int(self.u.shape[1])

    @property
    def device(self) -> torch.device:
        return self.u.device


@dataclass(frozen=True, eq=False)
class SimilarityResult:
    """One similarity value and how it was obtained.

    ``k_a``/``k_b`` are the dimensions that entered the comparison (for CKA: all units),
    ``rank_a``/``rank_b`` the numerical ranks and ``rtol_a``/``rtol_b`` the rank cuts that
    produced them (None where not computed), ``rhos`` the canonical correlations (descending,
    clipped to [0, 1]) and ``weights`` the PWCCA weights. ``kind`` says whether ``value`` is a
    "similarity" (1 = same) or a "distance" (0 = same); ``reason`` why ``value`` is NaN;
    ``n_rows_used`` the tokens RSA used (a subsample above ``max_rows``), ``n_neighbors`` the
    k of mutual k-NN. For mutual_knn and rsa, ``k_a``/``k_b`` are the dims.
    """

    metric: str
    value: float
    k_a: int
    k_b: int
    n_tokens: int
    rank_a: int | None = None
    rank_b: int | None = None
    rhos: np.ndarray | None = None
    weights: np.ndarray | None = None
    rtol_a: float | None = None
    rtol_b: float | None = None
    kind: str = "similarity"
    reason: str | None = None
    n_rows_used: int | None = None
    n_neighbors: int | None = None


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


# --------------------------------------------------------------------------- input handling


def _as_tensor(x: Array, name: str) -> torch.Tensor:
    """Return ``x`` as a torch tensor (no copy where possible) after shape checks."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        arr = np.asarray(x)
        if not arr.flags.writeable or any(step < 0 for step in arr.strides):
            arr = arr.copy()  # torch.from_numpy rejects both
        if arr.dtype.kind not in "fiub":
            raise ValueError(f"{name} must be a numeric array, got dtype {arr.dtype}")
        t = torch.from_numpy(arr)
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (tokens × dims), got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 tokens): nothing to compare")
    if t.shape[1] == 0:
        raise ValueError(f"{name} has 0 dims")
    return t


def _centred(x: Array, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.dtype]:
    """float64 copy of ``x`` with every unit centred over tokens, the means removed and the
    input dtype; rejects NaN/inf. Units that are exactly constant become exactly zero."""
    t = _as_tensor(x, name)
    if not t.is_floating_point():
        t = t.to(torch.float64)
    mean = t.mean(0, dtype=torch.float64)
    _check_finite(mean, t, name)
    const = _constant_columns(t)
    xc = t - mean  # a new float64 tensor (type promotion): one pass, no separate copy
    residue = xc.mean(0)
    xc -= residue  # second pass removes the rounding residue of large offsets
    if bool(const.any()):
        xc[:, const] = 0.0
    return xc, mean + residue, t.dtype


def _column_range(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column min and max. On the CPU by numpy, which reduces over rows along the
    contiguous axis (torch.aminmax(dim=0) took 0.64 s on 50k × 512 against ~0.05 s)."""
    if t.device.type != "cpu":
        return torch.aminmax(t, dim=0)
    a = t.numpy()
    return torch.from_numpy(a.min(0)), torch.from_numpy(a.max(0))


def _constant_columns(t: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the columns whose values are all equal."""
    lo, hi = _column_range(t)
    return lo == hi


def _no_variance(name: str, n_tokens: int) -> ValueError:
    return ValueError(
        f"{name} has no variance: every unit is constant over the {n_tokens} tokens (e.g. all "
        f"zero), so its similarity to anything is undefined"
    )


def _check_min_tokens(n_tokens: int, metric: str, debiased: bool = False) -> None:
    """CKA-type metrics: 2 centred tokens span one direction on both sides (value 1 always)."""
    need = 4 if debiased else 3
    if n_tokens < need:
        why = (
            "the unbiased HSIC estimator divides by n - 3"
            if debiased
            else (
                "with 2 tokens both centred Gram matrices are multiples of [[1, -1], [-1, 1]], so "
                "the value is 1 for any data; with 1 it is 0/0"
            )
        )
        raise ValueError(f"{metric} needs at least {need} tokens, got {n_tokens} ({why})")


def _check_finite(col_sums: torch.Tensor, x: torch.Tensor, name: str) -> None:
    """Raise on NaN/inf; the column sums (computed anyway) are finite iff every value is."""
    if bool(torch.isfinite(col_sums).all()):
        return
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf; clean or drop those tokens first")
    raise ValueError(f"{name} has values too large to sum in float64; rescale it")


def _max_abs(x: torch.Tensor) -> float:
    """Largest |x| (0.0 for an all-zero or empty tensor)."""
    if x.numel() == 0:
        return 0.0
    lo, hi = torch.aminmax(x)
    return max(-float(lo), float(hi))


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b. On the CPU, a Gram (a is b.T, float64, contiguous) goes to scipy's BLAS syrk
    (half the flops; scipy bundles a recent OpenBLAS), everything else to torch (MKL).
    numpy's own BLAS can be several times slower: 2.7 s against 0.49 s for a 512 × 50k × 512
    float64 product with numpy 1.26's OpenBLAS 0.3.23 on a Sapphire Rapids core."""
    if a.device.type != "cpu":
        return a @ b
    if a.dtype == b.dtype == torch.float64 and _is_gram(a, b):
        return _syrk(a, b)
    return torch.mm(a, b)


def _is_gram(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether a is b.T (same storage), with one of them C-contiguous."""
    return (
        a.data_ptr() == b.data_ptr()
        and a.shape == b.shape[::-1]
        and a.stride() == b.stride()[::-1]
        and (a.is_contiguous() or b.is_contiguous())
    )


def _syrk(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b for a = b.T by BLAS dsyrk (one triangle, mirrored: exactly symmetric)."""
    if b.is_contiguous():  # bᵀb = A Aᵀ for A = b.numpy().T, an F-ordered view
        c = scipy.linalg.blas.dsyrk(1.0, b.numpy().T)
    else:  # a aᵀ = Aᵀ A for A = a.numpy().T (F-ordered): trans=1
        c = scipy.linalg.blas.dsyrk(1.0, a.numpy().T, trans=1)
    upper = np.triu(c, 1)
    c += upper.T
    return torch.from_numpy(c)


# float32 cross products of orthonormal bases are accumulated in float64 over this many tokens.
_CHUNK_TOKENS = 8192
_PRODUCTS = ("float64", "float32")


def _mm32(a32: torch.Tensor, b32: torch.Tensor) -> torch.Tensor:
    """a32ᵀ b32 (tokens × k each, float32) as float64: float32 products over token chunks,
    the chunk sums added in float64 (a float32 accumulator over 50k tokens would lose ~1e-6
    on correlations near 1)."""
    out = torch.zeros(a32.shape[1], b32.shape[1], dtype=torch.float64, device=a32.device)
    for lo in range(0, a32.shape[0], _CHUNK_TOKENS):
        out += _mm(a32[lo : lo + _CHUNK_TOKENS].T, b32[lo : lo + _CHUNK_TOKENS])
    return out


def _cross(ua: torch.Tensor, ub: torch.Tensor, products: str = "float64") -> torch.Tensor:
    """U_aᵀU_b of two orthonormal token-space bases, in float64 or from float32 products.

    float32 rounds each entry of U by <= 6e-8 relative, which moves each canonical
    correlation by ~1e-7 and their mean by ~1e-8 (checked to 1e-6 by the tests and the
    benchmark); it halves the time and, in pairwise, the memory of the held bases."""
    if products == "float32":
        return _mm32(ua.float(), ub.float())
    return _mm(ua.T, ub)


def _shape(x: Array | Basis, name: str) -> tuple[int, int]:
    if isinstance(x, Basis):
        return x.n_tokens, x.n_dims
    t = _as_tensor(x, name)
    return int(t.shape[0]), int(t.shape[1])


def _check_pair(
    a: Array | Basis,
    b: Array | Basis,
    metric: str,
    k: int | None = None,
    allow_underdetermined: bool = False,
) -> int:
    """Validate a pair (same token count, enough tokens for CCA); return the token count."""
    (na, da), (nb, db) = _shape(a, "a"), _shape(b, "b")
    if na != nb:
        raise ValueError(
            f"a has {na} tokens and b has {nb}: both must hold the same tokens in the same order"
        )
    if metric in _CCA_FAMILY:
        _check_tokens(na, da, db, metric, k, allow_underdetermined)
    return na


def _check_tokens(n_tokens: int, da: int, db: int, metric: str, k: int | None, allow: bool) -> None:
    """Refuse CCA when tokens - 1 <= dims used: centring leaves rank <= tokens - 1, and with
    that many directions every canonical correlation is 1, even for independent noise."""
    d = max(da, db) if k is None else max(min(k, da), min(k, db))
    if n_tokens - 1 <= d and not allow:
        raise ValueError(
            f"{metric} needs more tokens than dimensions + 1, got {n_tokens} tokens for "
            f"{da} and {db} dims (after centring the rank is at most tokens - 1 = "
            f"{n_tokens - 1}, so every canonical correlation would be 1). Use more tokens "
            f"(>=10x dims recommended), reduce with k=<fewer than {n_tokens - 1}>, or use "
            f"linear_cka; pass allow_underdetermined=True to compute it anyway."
        )


# --------------------------------------------------------------------------- truncation


_EPS64 = float(np.finfo(np.float64).eps)


def _input_eps(dtype) -> float:
    """Relative precision of an input dtype (numpy or torch); integers and bools count as exact
    (they are converted to float64, the working precision)."""
    if isinstance(dtype, torch.dtype):
        return float(torch.finfo(dtype).eps) if dtype.is_floating_point else _EPS64
    dtype = np.dtype(dtype)
    return float(np.finfo(dtype).eps) if dtype.kind == "f" else _EPS64


def default_rtol(n_tokens: int, n_dims: int, dtype) -> float:
    """The default rank cut (relative to s_max) for a tokens × dims input of ``dtype``.

    ``max(40 · sqrt(min(tokens, dims)) · eps(dtype), max(tokens, dims) · eps(float64))``,
    capped at 1e-2: the first term bounds what rounding the input to its dtype can do to the
    singular values, with a margin for float32 LayerNorm null directions (see _RTOL_C), the
    second the float64 SVD's own rounding. E.g. 200 dims: 6.7e-5 for float32 input,
    1.1e-13 (500 tokens) .. 1.1e-11 (50k tokens) for float64.
    """
    n, d = int(n_tokens), int(n_dims)
    rtol = max(_RTOL_C * np.sqrt(max(min(n, d), 1)) * _input_eps(dtype), max(n, d) * _EPS64)
    return float(min(rtol, _RTOL_MAX))


def _gram_rtol(rtol: float, n_tokens: int, n_dims: int) -> float:
    """The cut the Gram route can honour: eigh of a float64 Gram resolves eigenvalues down to
    about max(tokens, dims)·eps·λ_max (measured: null directions read as s ~ 1.5e-8·s_max),
    i.e. singular values down to sqrt of that."""
    return max(rtol, float(np.sqrt(max(n_tokens, n_dims) * _EPS64)))


def _rank(s: np.ndarray, rtol: float) -> int:
    """Number of singular values above ``rtol * s_max`` (s descending)."""
    if s.size == 0 or s[0] <= 0:
        return 0
    return int(np.count_nonzero(s > rtol * s[0]))


def n_keep(
    s: np.ndarray, variance: float | None = None, rule: Rule = "s2", k: int | None = None
) -> int:
    """Directions to keep from singular values ``s`` (descending, above the numerical rank).

    ``k`` fixes the count (capped at ``len(s)``). Otherwise ``variance`` keeps the smallest m
    whose cumulative share reaches it, with the share computed from s² (``rule="s2"``, the true
    variance) or from s (``rule="s"``, SVCCA paper appendix A / google tutorial). Neither:
    keep all (the numerical rank). Fractions are computed in float64.
    """
    s = np.asarray(s, dtype=np.float64)
    rank = int(s.size)
    if k is not None:
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        return min(int(k), rank)
    if variance is None or rank == 0:
        return rank
    if not 0.0 < variance <= 1.0:
        raise ValueError(f"variance must be in (0, 1], got {variance}")
    if s[0] <= 0:
        return 0
    s = s / s[0]  # scale free: s² of huge or tiny data would overflow or underflow
    if rule == "s2":
        w = s * s
    elif rule == "s":
        w = s
    else:
        raise ValueError(f"rule must be 's2' (sum of s^2) or 's' (sum of s), got {rule!r}")
    frac = np.cumsum(w) / w.sum()
    return min(int(np.searchsorted(frac, variance, side="left")) + 1, rank)


# --------------------------------------------------------------------------- bases


def basis(
    x: Array,
    *,
    variance: float | None = None,
    rule: Rule = "s2",
    k: int | None = None,
    rtol: float | None = DEFAULT_RTOL,
    method: Literal["auto", "svd", "gram"] = "auto",
) -> Basis:
    """Orthonormal basis of the centred representation ``x`` (tokens × dims), computed once.

    Keeps the directions chosen by :func:`n_keep` (default: the numerical rank, singular
    values above ``rtol·s_max``; ``rtol=None``: :func:`default_rtol` for x's dtype and shape).
    ``method``: ``"svd"`` is a tall SVD (most accurate); ``"gram"`` an eigh of the float64
    dims × dims Gram then U = X_c V / s (3–5× faster; it cuts at sqrt(max(tokens, dims)·eps)
    at the least, the smallest singular value it resolves); ``"auto"`` takes the Gram route
    unless a kept direction is weaker than 1e-4·s_max, part of the spectrum above the cut is
    below what the Gram route resolves, or tokens <= dims: then it takes the SVD. A constant
    input gives a basis of rank 0 (every metric then refuses it).
    """
    if method not in ("auto", "svd", "gram"):
        raise ValueError(f"method must be 'auto', 'svd' or 'gram', got {method!r}")
    xc, mean, dtype = _centred(x, "x")
    n_tokens, n_dims = xc.shape
    if rtol is None:
        rtol = default_rtol(n_tokens, n_dims, dtype)
    use_gram = method == "gram" or (method == "auto" and n_tokens > n_dims)
    scale = 1.0
    if use_gram:
        gram, scale = _self_gram(xc)
        cut = _gram_rtol(rtol, n_tokens, n_dims)
        s_dev, vecs, s_all, rank, kk = _eig_side(gram, variance, rule, k, cut)
        if method == "auto" and not (_well_conditioned(s_all, kk) and _resolved(s_all, rank, rtol)):
            use_gram = False
        else:
            if method == "gram":  # else the rank is the same at rtol (_resolved)
                rtol = cut
            v = vecs[:, :kk].contiguous()
            u = _mm(xc, v)
            u /= s_dev[:kk]
    if not use_gram:
        u_full, s_dev, vh = _svd(xc)
        s_all = s_dev.cpu().numpy()
        rank = _rank(s_all, rtol)
        kk = n_keep(s_all[:rank], variance, rule, k)
        u = u_full[:, :kk].contiguous()
        v = vh[:kk].T.contiguous()
        del u_full
    if scale != 1.0:  # report the singular values of x_c itself
        s_dev, s_all = s_dev * scale, s_all * scale
    return Basis(
        u=u,
        v=v,
        s=s_all[:rank].copy(),
        s_dev=s_dev[:rank].contiguous(),
        rank=rank,
        n_tokens=int(n_tokens),
        n_dims=int(n_dims),
        method="gram" if use_gram else "svd",
        rtol=float(rtol),
        mean=mean,
    )


def _resolved(s: np.ndarray, rank: int, rtol: float) -> bool:
    """Whether the Gram route's rank (cut at _gram_rtol) is also the rank at ``rtol``: no
    singular value lies between the two cuts, where the Gram route cannot tell signal from
    its own rounding."""
    return _rank(s, rtol) == rank


def _self_gram(xc: torch.Tensor) -> tuple[torch.Tensor, float]:
    """xcᵀxc in float64. If the squares under/overflow, xc is first divided in place by its
    largest |value|, which is returned (else 1.0); every metric here is scale invariant."""
    with np.errstate(over="ignore", invalid="ignore"):  # checked just below
        gram = _mm(xc.T, xc)
    if 1e-250 < float(gram.trace()) < 1e250:
        return gram, 1.0
    scale = _max_abs(xc) or 1.0
    xc /= scale
    return _mm(xc.T, xc), scale


def _eig_side(c: torch.Tensor, variance, rule, k, rtol):
    """Eigen-decomposition of a centred Gram block: s (descending, device), V, s on the CPU,
    numerical rank and the number of directions to keep."""
    lam, vecs = torch.linalg.eigh(c)
    s = lam.flip(0).clamp_min(0).sqrt()
    s_np = s.cpu().numpy()
    rank = _rank(s_np, rtol)
    return s, vecs.flip(1), s_np, rank, n_keep(s_np[:rank], variance, rule, k)


def _well_conditioned(s: np.ndarray, kk: int) -> bool:
    """Whether the Gram route is accurate for the kept directions (see _GRAM_SAFE)."""
    return kk == 0 or s[kk - 1] >= _GRAM_SAFE * s[0]


def _from_blocks(metric, caa, cbb, cab, n, variance, rule, k, rtol_a, rtol_b, safe: bool):
    """CCA-family result from centred Gram blocks: U_aᵀU_b = S_a⁻¹V_aᵀ C_ab V_b S_b⁻¹.

    ``rtol_a``/``rtol_b`` are the requested cuts (raised to what the Gram route resolves).
    With ``safe``, returns None when a kept direction is too weak for this route or the
    spectrum has values between the two cuts.
    """
    cut_a = _gram_rtol(rtol_a, n, caa.shape[0])
    cut_b = _gram_rtol(rtol_b, n, cbb.shape[0])
    sa, va, sa_np, ra, ka = _eig_side(caa, variance, rule, k, cut_a)
    sb, vb, sb_np, rb, kb = _eig_side(cbb, variance, rule, k, cut_b)
    for rank, name in ((ra, "a"), (rb, "b")):
        if rank == 0:
            raise _no_variance(name, n)
    if safe and not (
        _well_conditioned(sa_np, ka)
        and _well_conditioned(sb_np, kb)
        and _resolved(sa_np, ra, rtol_a)
        and _resolved(sb_np, rb, rtol_b)
    ):
        return None
    sa, va, sb, vb = sa[:ka], va[:, :ka], sb[:kb], vb[:, :kb]
    m = (va / sa).T @ cab @ (vb / sb)
    if metric == "pwcca":
        res = _pwcca_result(m, sa, va, sb, vb, n, ra, rb)
    else:
        res = _cca_result(metric, m, n, ka, kb, ra, rb)
    if safe:  # resolved: the ranks are those at the requested cuts
        cut_a, cut_b = rtol_a, rtol_b
    return dataclasses.replace(res, rtol_a=cut_a, rtol_b=cut_b)


def _get_basis(
    x: Array | Basis,
    variance: float | None,
    rule: Rule,
    k: int | None,
    rtol: float | None,
    method: str,
    name: str,
) -> tuple[Basis, int]:
    """Basis of ``x`` (reused if given) and the number of its directions the metric needs."""
    if not isinstance(x, Basis):
        x = basis(x, variance=variance, rule=rule, k=k, rtol=rtol, method=method)
    kk = n_keep(x.s, variance, rule, k)
    if kk > x.k:
        raise ValueError(
            f"basis {name} stores {x.k} directions but this metric needs {kk}: build it with "
            f"basis(x) (full rank) or with the same variance/rule/k as the metric"
        )
    return x, kk


# --------------------------------------------------------------------------- per-pair kernels


def _svd(m: torch.Tensor, values_only: bool = False):
    """torch's SVD (LAPACK gesdd), falling back to the slower QR-iteration driver (gesvd) when
    gesdd does not converge: it can fail on matrices with many equal singular values, such as
    U_aᵀU_b of a representation against itself (seen on a 200×200 one, with one thread)."""
    try:
        return torch.linalg.svdvals(m) if values_only else torch.linalg.svd(m, full_matrices=False)
    except torch.linalg.LinAlgError:
        out = scipy.linalg.svd(
            m.detach().cpu().numpy(),
            full_matrices=False,
            compute_uv=not values_only,
            lapack_driver="gesvd",
        )
        return (
            torch.as_tensor(out).to(m)
            if values_only
            else tuple(torch.as_tensor(o).to(m) for o in out)
        )


def _rhos(m: torch.Tensor) -> np.ndarray:
    """Canonical correlations = singular values of U_aᵀU_b, clipped to [0, 1]."""
    if min(m.shape) == 0:
        return np.zeros(0)
    return _svd(m, values_only=True).clamp(0.0, 1.0).cpu().numpy()


def _cca_result(metric: str, m: torch.Tensor, n: int, ka: int, kb: int, ra, rb) -> SimilarityResult:
    rhos = _rhos(m)
    value = float(rhos.mean()) if rhos.size else float("nan")
    return SimilarityResult(metric, value, ka, kb, n, ra, rb, rhos=rhos)


def _pwcca_result(
    m: torch.Tensor,
    sa: torch.Tensor,
    va: torch.Tensor,
    sb: torch.Tensor,
    vb: torch.Tensor,
    n: int,
    ra,
    rb,
) -> SimilarityResult:
    """PWCCA (Morcos et al. 2018): ρ weighted by α_i = Σ_j |<h_i, x_j>| on the smaller side.

    h_i are the unit-norm canonical variates of the side with fewer kept dims (a on ties) and
    x_j its centred units; <h_i, x_j> = (P_iᵀ S_k V_kᵀ)_j since U_kᵀ X_c = S_k V_kᵀ.
    """
    ka, kb = m.shape
    if min(ka, kb) == 0:
        return SimilarityResult("pwcca", float("nan"), ka, kb, n, ra, rb, np.zeros(0), np.zeros(0))
    p, rho, qh = _svd(m)
    if ka <= kb:
        proj = p.T @ (sa[:, None] * va.T)
    else:
        proj = qh @ (sb[:, None] * vb.T)
    alpha = proj.abs().sum(1)
    alpha = alpha / alpha.sum()
    rho = rho.clamp(0.0, 1.0)
    value = float((alpha * rho).sum())
    return SimilarityResult(
        "pwcca", value, ka, kb, n, ra, rb, rho.cpu().numpy(), alpha.cpu().numpy()
    )


def _debias(xty: float, rr: float, sq_x: float, sq_y: float, n: int) -> float:
    """Unbiased HSIC numerator (Song et al. 2007) in Kornblith's feature-space form.

    ``rr`` = Σ_t ‖x_t‖²‖y_t‖² and ``sq`` = ‖X‖²_F over centred token vectors.
    """
    return xty - n / (n - 2.0) * rr + sq_x * sq_y / ((n - 1.0) * (n - 2.0))


def _cka_value(xty, xx, yy, n: int, debiased: bool = False, extra: dict | None = None) -> float:
    """CKA = ‖XᵀY‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) from float64 scalars, optionally debiased."""
    xty, xx, yy = float(xty), float(xx), float(yy)
    if debiased:
        _check_min_tokens(n, "debiased CKA", debiased=True)
        e = {key: float(val) for key, val in (extra or {}).items()}
        xty = _debias(xty, e["rr_xy"], e["sq_x"], e["sq_y"], n)
        xx = _debias(xx, e["rr_xx"], e["sq_x"], e["sq_x"], n)
        yy = _debias(yy, e["rr_yy"], e["sq_y"], e["sq_y"], n)
    denom = xx * yy
    if not denom > 0:
        return float("nan")
    return xty / float(np.sqrt(denom))


def _cka_extra(rx: torch.Tensor, ry: torch.Tensor) -> dict:
    """Row-norm terms of debiased CKA from squared norms of centred token vectors."""
    return dict(rr_xy=rx @ ry, rr_xx=rx @ rx, rr_yy=ry @ ry, sq_x=rx.sum(), sq_y=ry.sum())


def _cka_from_bases(ba: Basis, bb: Basis, m: torch.Tensor, debiased: bool) -> SimilarityResult:
    """CKA via ‖XᵀY‖_F = ‖S_a (U_aᵀU_b) S_b‖_F and self terms ‖XᵀX‖²_F = Σ s⁴.

    Each side's s is divided by its largest value first (CKA is scale invariant), so s⁴
    cannot under- or overflow.
    """
    name = "cka_debiased" if debiased else "cka"
    n = ba.n_tokens
    sa, sb = ba.s_dev[: ba.k] / ba.s_dev[0], bb.s_dev[: bb.k] / bb.s_dev[0]
    c = sa[:, None] * m * sb[None, :]
    xty = (c * c).sum()
    xx, yy = (sa**4).sum(), (sb**4).sum()
    extra = None
    if debiased:  # squared norms of the centred token vectors, from the (full-rank) basis
        extra = _cka_extra(((ba.u * sa) ** 2).sum(1), ((bb.u * sb) ** 2).sum(1))
    value = _cka_value(xty, xx, yy, n, debiased, extra)
    return SimilarityResult(name, value, ba.n_dims, bb.n_dims, n, ba.rank, bb.rank)


def _compare(
    metric: str,
    ba: Basis,
    bb: Basis,
    ka: int,
    kb: int,
    m: torch.Tensor | None = None,
    debiased: bool = False,
) -> SimilarityResult:
    """Metric from two bases; ``m`` (= U_a[:, :ka]ᵀ U_b[:, :kb]) may be precomputed."""
    for b, name in ((ba, "a"), (bb, "b")):
        if b.rank == 0:
            raise _no_variance(name, b.n_tokens)
    if m is None:
        m = _mm(ba.u[:, :ka].T, bb.u[:, :kb])
    n = ba.n_tokens
    if metric in ("cca", "svcca"):
        res = _cca_result(metric, m, n, ka, kb, ba.rank, bb.rank)
    elif metric == "pwcca":
        res = _pwcca_result(
            m, ba.s_dev[:ka], ba.v[:, :ka], bb.s_dev[:kb], bb.v[:, :kb], n, ba.rank, bb.rank
        )
    else:
        res = _cka_from_bases(ba, bb, m, debiased)
    return dataclasses.replace(res, rtol_a=ba.rtol, rtol_b=bb.rtol)


# --------------------------------------------------------------------------- public metrics


def cca(
    a: Array | Basis,
    b: Array | Basis,
    *,
    rtol: float | None = DEFAULT_RTOL,
    method: str = "auto",
    allow_underdetermined: bool = False,
) -> SimilarityResult:
    """Mean canonical correlation over all directions above the numerical rank.

    ``a``/``b``: tokens × dims arrays or :class:`Basis` objects; ``method`` picks the route
    (module docstring); tokens <= dims raises unless ``allow_underdetermined``.
    """
    return _cca_family("cca", a, b, None, "s2", None, rtol, method, allow_underdetermined)


def svcca(
    a: Array | Basis,
    b: Array | Basis,
    *,
    variance: float | None = 0.99,
    rule: Rule = "s2",
    k: int | None = None,
    rtol: float | None = DEFAULT_RTOL,
    method: str = "auto",
    allow_underdetermined: bool = False,
) -> SimilarityResult:
    """SVCCA (Raghu et al. 2017): CCA on the top directions of each side's SVD; mean ρ.

    Keeps the directions holding ``variance`` of the total by ``rule`` ("s2": Σs², the true
    variance, default; "s": Σs as in the paper appendix and google tutorial), or a fixed ``k``
    (overrides ``variance``, capped at the rank). The mean is over min(k_a, k_b) correlations.
    """
    return _cca_family("svcca", a, b, variance, rule, k, rtol, method, allow_underdetermined)


def pwcca(
    a: Array | Basis,
    b: Array | Basis,
    *,
    compat: Literal["paper", "google"] = "paper",
    variance: float | None = None,
    rule: Rule = "s2",
    k: int | None = None,
    rtol: float | None = DEFAULT_RTOL,
    method: str = "auto",
    epsilon: float = 0.0,
    allow_underdetermined: bool = False,
) -> SimilarityResult:
    """Projection-weighted CCA (Morcos et al. 2018), not symmetric in a and b.

    ``compat="paper"`` (default): CCA at the numerical rank (or a ``variance``/``k`` truncation)
    of centred data, weights from the canonical variates of the side with fewer kept dims.
    ``compat="google"`` reproduces google/svcca ``compute_pwcca(a.T, b.T, epsilon)``: no
    Σ^{-1/2} on the directions, means added back, uncentred units (not shift invariant).
    """
    if compat == "google":
        _check_pair(a, b, "pwcca", None, allow_underdetermined)
        if isinstance(a, Basis) or isinstance(b, Basis):
            raise ValueError("compat='google' needs the raw activations, not Basis objects")
        return _pwcca_google(a, b, epsilon)
    if compat != "paper":
        raise ValueError(f"compat must be 'paper' or 'google', got {compat!r}")
    return _cca_family("pwcca", a, b, variance, rule, k, rtol, method, allow_underdetermined)


def linear_cka(
    a: Array | Basis,
    b: Array | Basis,
    *,
    debiased: bool = False,
    rtol: float | None = DEFAULT_RTOL,
    method: str = "auto",
) -> SimilarityResult:
    """Linear CKA (Kornblith et al. 2019) on centred features; ``debiased`` uses unbiased HSIC.

    Invariant to orthogonal maps and isotropic scaling, not to general invertible maps; works
    with tokens <= dims (debiased CKA then stays near 0 for unrelated data, biased CKA does not).
    """
    n = _check_pair(a, b, "cka")
    _check_min_tokens(n, "debiased CKA" if debiased else "linear CKA", debiased)
    if isinstance(a, Basis) or isinstance(b, Basis):
        ba, _ = _get_basis(a, None, "s2", None, rtol, method, "a")
        bb, _ = _get_basis(b, None, "s2", None, rtol, method, "b")
        if ba.device != bb.device:
            raise ValueError(f"a is on {ba.device} and b on {bb.device}; put them on one device")
        return _compare("cka", ba, bb, ba.k, bb.k, debiased=debiased)
    (xc, _, _), (yc, _, _) = _centred(a, "a"), _centred(b, "b")
    if xc.device != yc.device:
        raise ValueError(f"a is on {xc.device} and b on {yc.device}; put them on one device")
    for t, name in ((xc, "a"), (yc, "b")):  # CKA is scale invariant; unit scale keeps the
        top = _max_abs(t)  # 4th powers finite
        if top == 0:
            raise _no_variance(name, n)
        t /= top
    xty = _mm(xc.T, yc).square().sum()
    xx, yy = _mm(xc.T, xc).square().sum(), _mm(yc.T, yc).square().sum()
    extra = None
    if debiased:
        rx, ry = torch.linalg.vector_norm(xc, dim=1) ** 2, torch.linalg.vector_norm(yc, dim=1) ** 2
        extra = _cka_extra(rx, ry)
    value = _cka_value(xty, xx, yy, n, debiased, extra)
    name = "cka_debiased" if debiased else "cka"
    return SimilarityResult(name, value, int(xc.shape[1]), int(yc.shape[1]), n)


def _cca_family(
    metric: str,
    a: Array | Basis,
    b: Array | Basis,
    variance: float | None,
    rule: Rule,
    k: int | None,
    rtol: float | None,
    method: str,
    allow: bool,
) -> SimilarityResult:
    n = _check_pair(a, b, metric, k, allow)
    raw = not (isinstance(a, Basis) or isinstance(b, Basis))
    rtol_a = rtol_b = rtol
    if raw and method in ("auto", "gram"):
        (xc, _, dtype_a), (yc, _, dtype_b) = _centred(a, "a"), _centred(b, "b")
        if xc.device != yc.device:
            raise ValueError(f"a is on {xc.device} and b on {yc.device}; put them on one device")
        if rtol is None:  # from the inputs' dtypes (xc, yc are float64 copies)
            rtol_a = default_rtol(n, xc.shape[1], dtype_a)
            rtol_b = default_rtol(n, yc.shape[1], dtype_b)
        if method == "gram" or n > max(xc.shape[1], yc.shape[1]):
            caa, cbb = _self_gram(xc)[0], _self_gram(yc)[0]
            res = _from_blocks(
                metric,
                caa,
                cbb,
                _mm(xc.T, yc),
                n,
                variance,
                rule,
                k,
                rtol_a,
                rtol_b,
                method == "auto",
            )
            if res is not None:
                return res
        a, b, method = xc, yc, "svd"  # weak kept directions: the accurate route
    ba, ka = _get_basis(a, variance, rule, k, rtol_a, method, "a")
    bb, kb = _get_basis(b, variance, rule, k, rtol_b, method, "b")
    if ba.device != bb.device:
        raise ValueError(f"a is on {ba.device} and b on {bb.device}; put them on one device")
    return _compare(metric, ba, bb, ka, kb)


# --------------------------------------------------------------------------- google compat


def _psd_sqrt(mat: np.ndarray) -> np.ndarray:
    """google's positivedef_matrix_sqrt; negative round-off eigenvalues clipped to 0."""
    w, v = np.linalg.eigh(mat)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def _pwcca_google(x: Array, y: Array, epsilon: float) -> SimilarityResult:
    """google/svcca ``compute_pwcca`` (pwcca.py + cca_core.get_cca_similarity), in numpy f64.

    Deviations, all outside google's working range: the ``else`` branch uses acts2 (google
    indexes acts1, an IndexError when sizes differ; google/svcca PR #9), means of removed units
    are dropped (google would fail to broadcast), negative round-off eigenvalues of pinv(Σ) are
    clipped (google returns NaN), and the correlations are clipped to [0, 1].
    """
    acts1 = _as_tensor(x, "a").to(torch.float64).cpu().numpy().T
    acts2 = _as_tensor(y, "b").to(torch.float64).cpu().numpy().T
    if not (np.isfinite(acts1).all() and np.isfinite(acts2).all()):
        raise ValueError("input contains NaN or inf; clean or drop those tokens first")
    numx = acts1.shape[0]
    cov = np.cov(acts1, acts2)
    sxx, sxy = cov[:numx, :numx], cov[:numx, numx:]
    syy = cov[numx:, numx:]
    xmax, ymax = np.max(np.abs(sxx)), np.max(np.abs(syy))
    if xmax == 0 or ymax == 0:
        raise ValueError("a or b has no variance: every unit is constant")
    sxx, syy = sxx / xmax, syy / ymax
    sxy = sxy / np.sqrt(xmax * ymax)
    x_idx = np.abs(np.diagonal(sxx)) >= epsilon
    y_idx = np.abs(np.diagonal(syy)) >= epsilon
    if not (x_idx.any() and y_idx.any()):
        raise ValueError(f"epsilon={epsilon} removes every unit of a or b")
    sxx, syy = sxx[x_idx][:, x_idx], syy[y_idx][:, y_idx]
    sxy = sxy[x_idx][:, y_idx]
    sxx = sxx + epsilon * np.eye(sxx.shape[0])
    syy = syy + epsilon * np.eye(syy.shape[0])
    invsqrt_xx = _psd_sqrt(np.linalg.pinv(sxx))
    invsqrt_yy = _psd_sqrt(np.linalg.pinv(syy))
    u, s, vh = np.linalg.svd(invsqrt_xx @ sxy @ invsqrt_yy)
    s = np.abs(s)
    means1 = acts1.mean(axis=1, keepdims=True)
    means2 = acts2.mean(axis=1, keepdims=True)
    if x_idx.sum() <= y_idx.sum():
        dirns = u.T @ (acts1[x_idx] - means1[x_idx]) + means1[x_idx]
        acts, idx = acts1, x_idx
    else:
        dirns = vh @ (acts2[y_idx] - means2[y_idx]) + means2[y_idx]
        acts, idx = acts2, y_idx
    p, _ = np.linalg.qr(dirns.T)
    weights = np.abs(p.T @ acts[idx].T).sum(axis=1)
    weights = weights / weights.sum()
    rhos = np.clip(s, 0.0, 1.0)
    value = float(np.sum(weights * rhos))
    return SimilarityResult(
        "pwcca_google",
        value,
        int(x_idx.sum()),
        int(y_idx.sum()),
        acts1.shape[1],
        rhos=rhos,
        weights=weights,
    )


# --------------------------------------------------------------------------- more measures


class _Undefined(ValueError):
    """A representation the metric is undefined for (e.g. no variance): single calls raise
    it, pairwise/shuffled_baseline turn it into NaN cells with the message as reason."""


def _no_variance_error(name: str, n_tokens: int) -> _Undefined:
    return _Undefined(str(_no_variance(name, n_tokens)))


def _procrustes_from_bases(
    ba: Basis, bb: Basis, ka: int, kb: int, m: torch.Tensor
) -> SimilarityResult:
    """‖X_cᵀY_c‖_* / (‖X_c‖_F ‖Y_c‖_F) = ‖S_a (U_aᵀU_b) S_b‖_* / (‖s_a‖ ‖s_b‖), V's dropped
    (orthonormal columns leave the nuclear norm unchanged); s scaled by s_max first."""
    sa, sb = ba.s_dev[:ka] / ba.s_dev[0], bb.s_dev[:kb] / bb.s_dev[0]
    c = sa[:, None] * m * sb[None, :]
    nuclear = _svd(c, values_only=True).sum()
    value = float(nuclear / torch.sqrt((sa * sa).sum() * (sb * sb).sum()))
    value = min(max(value, 0.0), 1.0)  # <= 1 by von Neumann's trace inequality
    return SimilarityResult(
        "procrustes", value, ka, kb, ba.n_tokens, ba.rank, bb.rank, rtol_a=ba.rtol, rtol_b=bb.rtol
    )


def _raw_rows(x: Array | Basis, name: str, rows: np.ndarray | None = None) -> torch.Tensor:
    """The (optionally row-subsampled) raw rows of ``x`` in float64; a full-rank Basis gives
    u s vᵀ + mean (the directions below its rank cut are lost, nothing else)."""
    if isinstance(x, Basis):
        if x.mean is None or x.k < x.rank:
            raise ValueError(
                f"{name}: this metric needs the raw rows; pass the array or a full-rank "
                f"Basis (basis(x) without variance/k)"
            )
        u = x.u if rows is None else x.u[torch.as_tensor(rows, device=x.u.device)]
        return (u * x.s_dev[: x.k]) @ x.v.T + x.mean
    t = _as_tensor(x, name)
    if rows is not None:
        t = t[torch.as_tensor(rows, device=t.device)]
    out = t.to(torch.float64)
    _check_finite(out.sum(0), out, name)
    return out


def _unit_rows(x: torch.Tensor, name: str, what: str, why: str) -> torch.Tensor:
    """Rows divided by their l2 norms; a zero row has no direction."""
    norms = torch.linalg.vector_norm(x, dim=1)
    zero = norms == 0
    if bool(zero.any()):
        raise _Undefined(
            f"{name} has {int(zero.sum())} {what} row(s) (first: token "
            f"{int(torch.nonzero(zero)[0, 0])}): {why} is 0/0"
        )
    return x / norms[:, None]


def _same_rows(x: torch.Tensor) -> bool:
    return bool(_constant_columns(x).all())


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
    tol = 16 * d * _EPS64
    out = np.empty((n, k), dtype=np.int64)
    step = max(1, min(n, _BLOCK_BYTES // 4 // (8 * n)))
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        sims = _mm(xn[lo:hi], xn.T)
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
    n, d = _shape(x, name)
    k = opts["k"]
    if not 1 <= int(k) < n - 1:
        raise ValueError(
            f"mutual_knn needs 1 <= k < tokens - 1, got k={k} for {n} tokens (with k = tokens "
            f"- 1 every row's neighbours are all other rows and the value is 1)"
        )
    rows = _raw_rows(x, name)
    if _same_rows(rows):
        raise _no_variance_error(name, n)
    unit = _unit_rows(rows, name, "all-zero", "their cosine similarity")
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
    n, d = _shape(x, name)
    rows = rsa_rows(n, opts["max_rows"], opts["sample_seed"])
    r = _raw_rows(x, name, rows)
    if r.shape[0] < 3:
        raise ValueError(f"rsa needs at least 3 rows (tokens), got {r.shape[0]}")
    if _same_rows(r):
        raise _no_variance_error(name, n)
    z = r - r.mean(1, keepdim=True)  # Pearson correlation over the units
    z = _unit_rows(z, name, "constant", "their Pearson correlation")
    iu = np.triu_indices(r.shape[0], 1)
    rdm = 1.0 - _mm(z, z.T).cpu().numpy()[iu]
    ranks = _average_ranks(rdm)
    ranks -= (ranks.size + 1) / 2.0
    norm = float(np.sqrt(ranks @ ranks))
    if norm == 0:
        raise _Undefined(f"every entry of {name}'s RDM is equal: the rank correlation is 0/0")
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


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True, eq=False)
class _BasisCache:
    """Cache of the basis metrics: a Basis and the number of its directions the metric uses."""

    basis: Basis
    k: int

    @property
    def n_tokens(self) -> int:
        return self.basis.n_tokens

    @property
    def n_perm(self) -> int:
        return self.basis.n_tokens

    def permuted(self, perm: np.ndarray) -> _BasisCache:
        """Basis of x[perm]: its token-space directions with their rows permuted."""
        p = torch.from_numpy(perm).to(self.basis.device)
        return dataclasses.replace(self, basis=dataclasses.replace(self.basis, u=self.basis.u[p]))


@dataclass(frozen=True, eq=False)
class _Dead:
    """Placeholder cache of a representation the metric is undefined for."""

    reason: str
    n_tokens: int


@dataclass(frozen=True)
class Measure:
    """A registered metric: what it caches per representation and how it compares two caches.

    ``prepare(x, opts, name)`` builds one representation's cache (once per :func:`pairwise`
    or :func:`shuffled_baseline` call); ``compare(cache_a, cache_b, opts, m)`` returns a
    :class:`SimilarityResult`. Caches have ``n_tokens``, ``n_perm`` (rows a shuffle permutes)
    and ``permuted(perm)`` (the cache of x[perm], cheap). With ``uses_bases`` the caches are
    bases and ``m`` is U_aᵀU_b, taken from one product per block of pairs. ``options`` are
    the keywords the metric takes, with defaults.
    """

    name: str
    prepare: Callable[[Array | Basis, dict, str], object]
    compare: Callable[..., SimilarityResult]
    options: Mapping[str, object]
    kind: Literal["similarity", "distance"] = "similarity"
    symmetric: bool = True
    uses_bases: bool = False


_REGISTRY: dict[str, Measure] = {}
_ALIASES = {"linear_cka": "cka"}


def register(measure: Measure) -> Measure:
    """Add a metric to those :func:`pairwise`, :func:`shuffled_baseline` and
    :func:`similarity` accept by name."""
    _REGISTRY[measure.name] = measure
    return measure


def metrics() -> tuple[str, ...]:
    """The registered metric names (plus aliases)."""
    return tuple(sorted(_REGISTRY)) + tuple(_ALIASES)


def _basis_prepare(check: Callable[[int, int, dict, str], None]):
    """prepare() of a basis metric: token checks, then the (reused or new) basis."""

    def prepare(x: Array | Basis, opts: dict, name: str) -> _BasisCache:
        n, d = _shape(x, name)
        check(n, d, opts)
        b, kk = _get_basis(
            x,
            opts.get("variance"),
            opts.get("rule", "s2"),
            opts.get("k"),
            opts["rtol"],
            opts["method"],
            name,
        )
        if b.rank == 0:
            raise _no_variance_error(name, n)
        return _BasisCache(b, kk)

    return prepare


def _cca_check(metric: str):
    def check(n: int, d: int, opts: dict) -> None:
        _check_tokens(n, d, d, metric, opts.get("k"), opts["allow_underdetermined"])

    return check


def _min_tokens_check(metric: str):
    def check(n: int, d: int, opts: dict) -> None:
        _check_min_tokens(n, metric, bool(opts.get("debiased")))

    return check


def _via_compare(metric: str, debiased: bool | None = None):
    """compare() of the original basis metrics: :func:`_compare`, unchanged."""

    def compare(ca: _BasisCache, cb: _BasisCache, opts: dict, m=None) -> SimilarityResult:
        deb = opts.get("debiased", False) if debiased is None else debiased
        if m is None:
            m = _cache_cross(ca, cb, opts)
        return _compare(metric, ca.basis, cb.basis, ca.k, cb.k, m, deb)

    return compare


def _cache_cross(ca: _BasisCache, cb: _BasisCache, opts: dict) -> torch.Tensor:
    return _cross(ca.basis.u[:, : ca.k], cb.basis.u[:, : cb.k], opts["products"])


def _procrustes_compare(ca: _BasisCache, cb: _BasisCache, opts: dict, m=None):
    if m is None:
        m = _cache_cross(ca, cb, opts)
    return _procrustes_from_bases(ca.basis, cb.basis, ca.k, cb.k, m)


def _procrustes_angular_compare(ca: _BasisCache, cb: _BasisCache, opts: dict, m=None):
    res = _procrustes_compare(ca, cb, opts, m)
    return dataclasses.replace(
        res, metric="procrustes_angular", value=float(np.arccos(res.value)), kind="distance"
    )


_BASIS_OPTIONS = {"rtol": DEFAULT_RTOL, "method": "auto", "products": "float64"}
_CCA_OPTIONS = {**_BASIS_OPTIONS, "allow_underdetermined": False}
_TRUNC_OPTIONS = {"variance": None, "rule": "s2", "k": None}

register(
    Measure(
        "cca", _basis_prepare(_cca_check("cca")), _via_compare("cca"), _CCA_OPTIONS, uses_bases=True
    )
)
register(
    Measure(
        "svcca",
        _basis_prepare(_cca_check("svcca")),
        _via_compare("svcca"),
        {**_CCA_OPTIONS, **_TRUNC_OPTIONS, "variance": 0.99},
        uses_bases=True,
    )
)
register(
    Measure(
        "pwcca",
        _basis_prepare(_cca_check("pwcca")),
        _via_compare("pwcca"),
        {**_CCA_OPTIONS, **_TRUNC_OPTIONS, "compat": "paper"},
        symmetric=False,
        uses_bases=True,
    )
)
register(
    Measure(
        "cka",
        _basis_prepare(_min_tokens_check("cka")),
        _via_compare("cka"),
        {**_BASIS_OPTIONS, "debiased": False},
        uses_bases=True,
    )
)
register(
    Measure(
        "cka_debiased",
        _basis_prepare(_min_tokens_check("cka_debiased")),
        _via_compare("cka", debiased=True),
        {**_BASIS_OPTIONS, "debiased": True},
        uses_bases=True,
    )
)
register(
    Measure(
        "procrustes",
        _basis_prepare(_min_tokens_check("procrustes")),
        _procrustes_compare,
        _BASIS_OPTIONS,
        uses_bases=True,
    )
)
register(
    Measure(
        "procrustes_angular",
        _basis_prepare(_min_tokens_check("procrustes_angular")),
        _procrustes_angular_compare,
        _BASIS_OPTIONS,
        kind="distance",
        uses_bases=True,
    )
)
register(Measure("mutual_knn", _knn_prepare, _knn_compare, {"k": 10}))
register(Measure("rsa", _rsa_prepare, _rsa_compare, {"max_rows": 2000, "sample_seed": 0}))


def _resolve(metric: str, kw: Mapping) -> tuple[Measure, dict]:
    """The registry entry of ``metric`` and its options (defaults updated by ``kw``)."""
    name = _ALIASES.get(metric, metric)
    if name not in _REGISTRY:
        raise ValueError(f"metric must be one of {metrics()}, got {metric!r}")
    measure = _REGISTRY[name]
    opts = dict(measure.options)
    known = {key for m in _REGISTRY.values() for key in m.options}
    unknown = sorted(set(kw) - known)
    if unknown:
        raise TypeError(f"unexpected keyword(s) for {name}: {unknown}")
    for key, value in kw.items():
        if key not in opts:
            raise ValueError(f"{key}= does not apply to {name} (it takes {sorted(opts)})")
        opts[key] = value
    if opts.get("products", "float64") not in _PRODUCTS:
        raise ValueError(f"products must be one of {_PRODUCTS}, got {opts['products']!r}")
    if opts.get("compat", "paper") != "paper":
        raise ValueError("compat='google' has no basis reuse; call pwcca(a, b, compat='google')")
    if name == "cka_debiased" and not opts["debiased"]:
        raise ValueError("cka_debiased is debiased; use metric='cka' for biased CKA")
    return measure, opts


def _cache(measure: Measure, x: Array | Basis, opts: dict, name: str):
    """One representation's cache, or _Dead (with the reason) where the metric is undefined."""
    try:
        return measure.prepare(x, opts, name)
    except _Undefined as err:
        return _Dead(str(err), _shape(x, name)[0])


def similarity(a: Array | Basis, b: Array | Basis, metric: str = "svcca", **kw):
    """One pair through the registry (the same numbers as :func:`pairwise`); raises where the
    metric is undefined for a or b. ``kw``: the metric's options (see :func:`pairwise`)."""
    measure, opts = _resolve(metric, kw)
    (na, _), (nb, _) = _shape(a, "a"), _shape(b, "b")
    if na != nb:
        raise ValueError(
            f"a has {na} tokens and b has {nb}: both must hold the same tokens in the same order"
        )
    ca, cb = measure.prepare(a, opts, "a"), measure.prepare(b, opts, "b")
    if measure.uses_bases and ca.basis.device != cb.basis.device:
        raise ValueError(f"a is on {ca.basis.device} and b on {cb.basis.device}; use one device")
    return measure.compare(ca, cb, opts, None)


def procrustes(
    a: Array | Basis,
    b: Array | Basis,
    *,
    rtol: float | None = DEFAULT_RTOL,
    method: str = "auto",
    products: str = "float64",
) -> SimilarityResult:
    """Orthogonal Procrustes similarity ‖X_cᵀY_c‖_* / (‖X_c‖_F ‖Y_c‖_F) in [0, 1] (nuclear norm;
    1 - value is half the squared Procrustes distance of the unit-norm centred data).

    Invariant to translation, isotropic scaling and orthogonal maps of either side, not to
    general invertible maps. A similarity.
    """
    return similarity(a, b, "procrustes", rtol=rtol, method=method, products=products)


def procrustes_angular(
    a: Array | Basis,
    b: Array | Basis,
    *,
    rtol: float | None = DEFAULT_RTOL,
    method: str = "auto",
    products: str = "float64",
) -> SimilarityResult:
    """Angular Procrustes shape DISTANCE arccos(:func:`procrustes`) in [0, π/2] (Williams et
    al. 2021): 0 for the same representation, a metric (triangle inequality). ``kind`` is
    "distance". Near 0 it magnifies rounding: arccos(1 - δ) ≈ sqrt(2δ), so a representation
    against itself gives ~1e-8, not 0.
    """
    return similarity(a, b, "procrustes_angular", rtol=rtol, method=method, products=products)


def mutual_knn(a: Array | Basis, b: Array | Basis, *, k: int = 10) -> SimilarityResult:
    """Mutual k-NN alignment (Huh et al. 2024): rows l2-normalised (not centred, as Huh et al.),
    each row's k nearest other rows by cosine; the mean over rows of |N_a(i) ∩ N_b(i)| / k.

    In [0, 1]; k / (tokens - 1) for unrelated representations. Invariant to positive scaling
    of each row and to orthogonal maps of the units; not to translation (rows are not
    centred) nor to negative scaling. Ties at the k-th neighbour go to the lower row index.
    A Basis input must be full rank; its rows are rebuilt as u s vᵀ + mean.
    """
    return similarity(a, b, "mutual_knn", k=k)


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
    """
    return similarity(a, b, "rsa", max_rows=max_rows, sample_seed=sample_seed)


# --------------------------------------------------------------------------- all pairs


def _blocks(
    bases: list[Basis],
    ks: list[int],
    index: list[int] | None = None,
    float32: bool = False,
) -> list[tuple[torch.Tensor, list[tuple]]]:
    """Concatenate the used columns of many bases into a few wide blocks (one gemm per row),
    in float32 with ``float32``. Members are (index[j], column offset, k)."""
    index = list(range(len(bases))) if index is None else index
    out, cols, members, nbytes = [], [], [], 0
    for j, b, kb in zip(index, bases, ks, strict=True):
        size = b.u.shape[0] * kb * 8
        if cols and nbytes + size > _BLOCK_BYTES:
            out.append(_cat(cols, members))
            cols, members, nbytes = [], [], 0
        cols.append(b.u[:, :kb].float() if float32 else b.u[:, :kb])
        members.append((j, kb))
        nbytes += size
    if cols:
        out.append(_cat(cols, members))
    return out


def _cat(cols: list[torch.Tensor], members: list[tuple]) -> tuple[torch.Tensor, list[tuple]]:
    offsets = np.concatenate([[0], np.cumsum([kb for _, kb in members])])
    block = torch.cat(cols, dim=1)
    return block, [(j, int(o), kb) for (j, kb), o in zip(members, offsets[:-1], strict=True)]


def pairwise(
    reps_a: Sequence[Array | Basis],
    reps_b: Sequence[Array | Basis] | None = None,
    metric: str = "svcca",
    *,
    return_results: bool = False,
    **kw,
) -> np.ndarray:
    """All-pairs similarity matrix of shape (len(reps_a), len(reps_b)).

    One cache per representation (:class:`Measure`), then one cheap comparison per pair. For
    the basis metrics (cca, svcca, pwcca, cka, cka_debiased, procrustes, procrustes_angular)
    the cache is a :class:`Basis` and a pair costs one k_a × k_b block of a product
    U_aᵀ[U_b1 U_b2 ...] (SVCCA: its singular values are the canonical correlations; CKA
    ‖S_a U_aᵀU_b S_b‖_F with cached self terms; Procrustes the nuclear norm of S_a U_aᵀU_b
    S_b); mutual_knn caches each row's neighbours, rsa the ranked RDM. ``reps_b=None`` or
    ``reps_b is reps_a`` is the symmetric case (each pair once, except for the asymmetric
    PWCCA). The caches of ``reps_b`` are held (bases: about tokens × Σk × 8 bytes; Basis
    objects passed in are copied once more); ``reps_a`` is walked once, so it may be a lazy
    sequence (e.g. loading from disk).

    ``metric`` and its keywords (defaults):

    - ``cca``: rtol=None, method="auto", products="float64", allow_underdetermined=False
    - ``svcca``: as cca, plus variance=0.99, rule="s2", k=None
    - ``pwcca``: as cca, plus variance=None, rule="s2", k=None (compat="paper" only)
    - ``cka`` (alias ``linear_cka``): rtol, method, products, debiased=False;
      ``cka_debiased``: the same with debiased=True
    - ``procrustes`` (similarity), ``procrustes_angular`` (a distance): rtol, method, products
    - ``mutual_knn``: k=10 (neighbours)
    - ``rsa``: max_rows=2000, sample_seed=0

    ``products="float32"`` computes the U_aᵀU_b blocks from float32 copies of the bases,
    accumulated in float64 over token chunks: about 2× faster and half the memory, values
    within ~1e-7 (see :func:`_cross`); bases, ranks and everything else stay float64.

    ``return_results=True`` returns an object array of :class:`SimilarityResult` (with k_a,
    k_b, ranks, rtols, reason) instead of the values. A representation the metric is
    undefined for (no variance, a zero row for mutual_knn) gives NaN cells with the reason,
    and a RuntimeWarning.
    """
    measure, opts = _resolve(metric, kw)
    symmetric = reps_b is None or reps_b is reps_a
    caches_b = [
        _cache(measure, x, opts, f"reps_b[{j}]")
        for j, x in enumerate(reps_a if symmetric else reps_b)
    ]
    n_b = len(caches_b)
    n_a = n_b if symmetric else len(reps_a)
    n_tok = caches_b[0].n_tokens if n_b else None
    for j, c in enumerate(caches_b):
        if c.n_tokens != n_tok:
            raise ValueError(f"reps_b[{j}] has {c.n_tokens} tokens, reps_b[0] has {n_tok}")
    live = [j for j, c in enumerate(caches_b) if not isinstance(c, _Dead)]
    blocks = []
    f32 = opts.get("products") == "float32"
    if measure.uses_bases and live:
        bases, ks = [caches_b[j].basis for j in live], [caches_b[j].k for j in live]
        blocks = _blocks(bases, ks, live, f32)
        for block, members in blocks:  # point at the block's columns: frees internal copies
            for j, o, kb in members:  # (float32 with f32: only debiased CKA reads u itself)
                c = caches_b[j]
                caches_b[j] = _BasisCache(dataclasses.replace(c.basis, u=block[:, o : o + kb]), kb)
    values = np.full((n_a, n_b), np.nan)
    results = np.empty((n_a, n_b), dtype=object) if return_results else None
    dead = {"reps_b": [j for j in range(n_b) if j not in set(live)], "reps_a": []}
    mirror = symmetric and measure.symmetric

    def store(i: int, j: int, res: SimilarityResult) -> None:
        values[i, j] = res.value
        if results is not None:
            results[i, j] = res
        if mirror and j != i:
            values[j, i] = res.value
            if results is not None:
                results[j, i] = _swapped(res)

    for i in range(n_a):
        if symmetric:
            ca = caches_b[i]
        else:
            ca = _cache(measure, reps_a[i], opts, f"reps_a[{i}]")
            if n_b and ca.n_tokens != n_tok:
                raise ValueError(f"reps_a[{i}] has {ca.n_tokens} tokens, reps_b have {n_tok}")
            if isinstance(ca, _Dead):
                dead["reps_a"].append(i)
        todo_j = [j for j in range(n_b) if not (mirror and j < i)]
        if isinstance(ca, _Dead):
            for j in todo_j:
                store(i, j, _undefined_result(measure, ca, caches_b[j]))
            continue
        for j in todo_j:
            if isinstance(caches_b[j], _Dead):
                store(i, j, _undefined_result(measure, ca, caches_b[j]))
        if not measure.uses_bases:
            for j in todo_j:
                if not isinstance(caches_b[j], _Dead):
                    store(i, j, measure.compare(ca, caches_b[j], opts, None))
            continue
        ua = ca.basis.u[:, : ca.k]
        ua = ua.float() if f32 else ua
        for block, members in blocks:
            todo = [(j, o, kb) for j, o, kb in members if not (mirror and j < i)]
            if not todo:
                continue
            lo = todo[0][1]
            hi = todo[-1][1] + todo[-1][2]
            prod = _mm32(ua, block[:, lo:hi]) if f32 else _mm(ua.T, block[:, lo:hi])
            for j, o, kb in todo:
                store(i, j, measure.compare(ca, caches_b[j], opts, prod[:, o - lo : o - lo + kb]))
    if dead["reps_b"] or dead["reps_a"]:
        which = "; ".join(f"{key} {idx}" for key, idx in dead.items() if idx)
        reasons = {c.reason for c in caches_b if isinstance(c, _Dead)}
        warnings.warn(
            f"pairwise({metric!r}): undefined for {which}, their cells are NaN"
            + (f" ({sorted(reasons)[0]})" if reasons else ""),
            RuntimeWarning,
            stacklevel=2,
        )
    return results if return_results else values


def _swapped(res: SimilarityResult) -> SimilarityResult:
    """The result of (b, a) from that of (a, b), for symmetric metrics."""
    return dataclasses.replace(
        res,
        k_a=res.k_b,
        k_b=res.k_a,
        rank_a=res.rank_b,
        rank_b=res.rank_a,
        rtol_a=res.rtol_b,
        rtol_b=res.rtol_a,
    )


def _undefined_result(measure: Measure, ca, cb) -> SimilarityResult:
    """NaN result for a pair with a representation the metric is undefined for, saying why."""
    reason = ca.reason if isinstance(ca, _Dead) else cb.reason

    def info(c, attr, default=None):
        if isinstance(c, _BasisCache):
            return {"k": c.k, "rank": c.basis.rank, "rtol": c.basis.rtol}[attr]
        return default

    return SimilarityResult(
        measure.name,
        float("nan"),
        info(ca, "k", 0),
        info(cb, "k", 0),
        ca.n_tokens,
        info(ca, "rank"),
        info(cb, "rank"),
        rtol_a=info(ca, "rtol"),
        rtol_b=info(cb, "rtol"),
        kind=measure.kind,
        reason=reason,
    )


# --------------------------------------------------------------------------- reused caches


@dataclass(frozen=True, eq=False)
class Prepared:
    """One representation's cache for one metric and its options, built once and reused for
    every pair it takes part in (what :func:`pairwise` does inside one call, across calls)."""

    metric: str
    measure: Measure
    opts: dict
    cache: object

    @property
    def n_tokens(self) -> int:
        return self.cache.n_tokens


def prepare(x: Array | Basis, metric: str = "svcca", name: str = "x", **kw) -> Prepared:
    """The metric's cache of ``x`` (a basis, neighbour lists, a ranked RDM); a representation
    the metric is undefined for gives a cache that compares to NaN with the reason."""
    measure, opts = _resolve(metric, kw)
    return Prepared(metric, measure, opts, _cache(measure, x, opts, name))


def compare_prepared(a: Prepared, b: Prepared) -> SimilarityResult:
    """The metric between two prepared representations (the same numbers as :func:`pairwise`)."""
    return compare_many([(a, b)])[0]


def compare_many(pairs: Sequence[tuple[Prepared, Prepared]]) -> list[SimilarityResult]:
    """:func:`compare_prepared` of each pair (one pair of representations under several
    metrics); the basis metrics among them share one product U_aᵀU_b of the two bases, each
    taking its first k_a × k_b block (a metric's directions lead its basis)."""
    for a, b in pairs:
        if a.measure is not b.measure or a.opts != b.opts:
            raise ValueError(f"prepared for different metrics or options: {a.metric} vs "
                             f"{b.metric}")
        if a.n_tokens != b.n_tokens:
            raise ValueError(f"a has {a.n_tokens} tokens and b has {b.n_tokens}")
    cross = _shared_cross(pairs)
    return [_undefined_result(a.measure, a.cache, b.cache)
            if isinstance(a.cache, _Dead) or isinstance(b.cache, _Dead)
            else a.measure.compare(a.cache, b.cache, a.opts, cross(a.cache, b.cache))
            for a, b in pairs]


def _shared_cross(pairs: Sequence[tuple[Prepared, Prepared]]
                  ) -> Callable[[object, object], torch.Tensor | None]:
    """m for a pair's caches: a block of one U_aᵀU_b when the pairs' basis metrics with
    float64 products hold the same two bases, else None (each metric takes its own product)."""
    shared = [(a.cache, b.cache) for a, b in pairs
              if a.measure.uses_bases and a.opts.get("products") == "float64"
              and not isinstance(a.cache, _Dead) and not isinstance(b.cache, _Dead)]
    bases = {(id(ca.basis), id(cb.basis)) for ca, cb in shared}
    if len(shared) < 2 or len(bases) != 1:
        return lambda ca, cb: None
    ua, ub = shared[0][0].basis.u, shared[0][1].basis.u
    ka, kb = max(ca.k for ca, _ in shared), max(cb.k for _, cb in shared)
    m = _cross(ua[:, :ka], ub[:, :kb])
    members = {(id(ca), id(cb)) for ca, cb in shared}

    def cross(ca, cb) -> torch.Tensor | None:
        return m[: ca.k, : cb.k] if (id(ca), id(cb)) in members else None

    return cross


def permuted_values(a: Prepared, b: Prepared, n: int, seed: int) -> np.ndarray:
    """The metric after ``n`` random re-pairings of b's tokens (each permutes b's cache only:
    the rows of its basis, its neighbour labels, its RDM); NaN where it is undefined."""
    return permuted_many([(a, b)], n, seed)[0]


def permuted_many(pairs: Sequence[tuple[Prepared, Prepared]], n: int, seed: int
                  ) -> list[np.ndarray]:
    """:func:`permuted_values` of each pair with the same seed (so every metric sees the same
    re-pairings); the basis metrics share each permutation's product, as in
    :func:`compare_many`."""
    out = [np.full(n, np.nan) for _ in pairs]
    live = [i for i, (a, b) in enumerate(pairs)
            if not isinstance(a.cache, _Dead) and not isinstance(b.cache, _Dead)]
    perms: dict[int, list[np.ndarray]] = {}
    for i in live:
        n_perm = pairs[i][1].cache.n_perm
        if n_perm not in perms:
            rng = np.random.default_rng(seed)
            perms[n_perm] = [rng.permutation(n_perm) for _ in range(n)]
    for j in range(n):
        memo: dict[int, Basis] = {}
        permuted = [(pairs[i][0], dataclasses.replace(pairs[i][1], cache=_permute(
            pairs[i][1].cache, perms[pairs[i][1].cache.n_perm][j], memo))) for i in live]
        for i, res in zip(live, compare_many(permuted), strict=True):
            out[i][j] = res.value
    return out


def _permute(cache, perm: np.ndarray, memo: dict[int, Basis]):
    """cache.permuted(perm); the basis metrics' caches of one basis share one permuted basis
    (so that compare_many shares their product)."""
    if not isinstance(cache, _BasisCache):
        return cache.permuted(perm)
    if id(cache.basis) not in memo:
        memo[id(cache.basis)] = cache.permuted(perm).basis
    return dataclasses.replace(cache, basis=memo[id(cache.basis)])


# --------------------------------------------------------------------------- chance level


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
    estimates at that size (NUMERICS.md §3.1). Caches are computed once; each shuffle
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


# --------------------------------------------------------------------------- streaming


class GramAccumulator:
    """float64 Gram blocks accumulated chunk by chunk, for token sets too big for memory.

    ``update(xa, xb)`` adds a chunk of the same tokens from both representations (any dtype,
    numpy or torch). Each side is shifted by its first chunk's mean before accumulating, so
    large offsets do not cancel catastrophically. Results agree with the in-memory Gram route.
    The default rank cut follows the least precise chunk dtype seen (:func:`default_rtol`);
    units constant over every chunk are treated as exactly constant.
    """

    def __init__(self) -> None:
        self.n = 0
        self._s: dict[str, torch.Tensor] = {}
        self._dtype: dict[str, torch.dtype] = {}  # least precise chunk dtype per side

    def update(self, xa: Array, xb: Array) -> GramAccumulator:
        """Add one chunk (tokens × dims_a, tokens × dims_b)."""
        ta, tb = _as_tensor(xa, "xa"), _as_tensor(xb, "xb")
        za = ta.to(torch.float64, copy=True)
        zb = tb.to(torch.float64, copy=True)
        if za.shape[0] != zb.shape[0]:
            raise ValueError(f"chunk has {za.shape[0]} tokens in xa and {zb.shape[0]} in xb")
        sum_a, sum_b = za.sum(0), zb.sum(0)
        _check_finite(sum_a, za, "xa")
        _check_finite(sum_b, zb, "xb")
        for side, t in (("a", ta), ("b", tb)):
            if side not in self._dtype or _input_eps(t.dtype) > _input_eps(self._dtype[side]):
                self._dtype[side] = t.dtype
        (lo_a, hi_a), (lo_b, hi_b) = _column_range(za), _column_range(zb)
        st = self._s
        if self.n == 0:
            st["ref_a"], st["ref_b"] = sum_a / za.shape[0], sum_b / zb.shape[0]
            # a fixed per-side scale (first chunk's spread) keeps the products representable
            st["scale_a"] = _max_abs(za - st["ref_a"]) or 1.0
            st["scale_b"] = _max_abs(zb - st["ref_b"]) or 1.0
            da, db = za.shape[1], zb.shape[1]
            zeros = dict(dtype=torch.float64, device=za.device)
            for key, shape in [
                ("sa", (da,)),
                ("sb", (db,)),
                ("saa", (da, da)),
                ("sbb", (db, db)),
                ("sab", (da, db)),
                ("qa_za", (da,)),
                ("qa_zb", (db,)),
                ("qb_za", (da,)),
                ("qb_zb", (db,)),
                ("qa", ()),
                ("qb", ()),
                ("qaqa", ()),
                ("qbqb", ()),
                ("qaqb", ()),
            ]:
                st[key] = torch.zeros(shape, **zeros)
            st["lo_a"], st["hi_a"], st["lo_b"], st["hi_b"] = lo_a, hi_a, lo_b, hi_b
        elif za.shape[1] != st["sa"].shape[0] or zb.shape[1] != st["sb"].shape[0]:
            raise ValueError("chunk dims differ from the first chunk's")
        else:
            for key, lo, hi in (("a", lo_a, hi_a), ("b", lo_b, hi_b)):
                st["lo_" + key] = torch.minimum(st["lo_" + key], lo)
                st["hi_" + key] = torch.maximum(st["hi_" + key], hi)
        za -= st["ref_a"]
        zb -= st["ref_b"]
        za /= st["scale_a"]
        zb /= st["scale_b"]
        qa, qb = torch.linalg.vector_norm(za, dim=1) ** 2, torch.linalg.vector_norm(zb, dim=1) ** 2
        st["sa"] += za.sum(0)
        st["sb"] += zb.sum(0)
        st["saa"] += _mm(za.T, za)
        st["sbb"] += _mm(zb.T, zb)
        st["sab"] += _mm(za.T, zb)
        st["qa_za"] += qa @ za
        st["qa_zb"] += qa @ zb
        st["qb_za"] += qb @ za
        st["qb_zb"] += qb @ zb
        st["qa"] += qa.sum()
        st["qb"] += qb.sum()
        st["qaqa"] += qa @ qa
        st["qbqb"] += qb @ qb
        st["qaqb"] += qa @ qb
        self.n += int(za.shape[0])
        return self

    def _blocks(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Centred Gram blocks C_aa, C_bb, C_ab (float64)."""
        if self.n == 0:
            raise ValueError("no tokens accumulated: call update() first")
        st, n = self._s, self.n
        da, db = st["sa"] / n, st["sb"] / n
        caa = st["saa"] - n * torch.outer(da, da)
        cbb = st["sbb"] - n * torch.outer(db, db)
        cab = st["sab"] - n * torch.outer(da, db)
        caa, cbb = (caa + caa.T) / 2, (cbb + cbb.T) / 2
        const_a, const_b = st["lo_a"] == st["hi_a"], st["lo_b"] == st["hi_b"]
        for c, rows, cols in (
            (caa, const_a, const_a),
            (cbb, const_b, const_b),
            (cab, const_a, const_b),
        ):
            c[rows, :] = 0.0  # exactly constant units: no rounding residue
            c[:, cols] = 0.0
        return caa, cbb, cab

    def _rtols(self, rtol: float | None, da: int, db: int) -> tuple[float, float]:
        if rtol is not None:
            return rtol, rtol
        return (
            default_rtol(self.n, da, self._dtype["a"]),
            default_rtol(self.n, db, self._dtype["b"]),
        )

    def _cca_like(self, metric, variance, rule, k, rtol, allow) -> SimilarityResult:
        caa, cbb, cab = self._blocks()
        _check_tokens(self.n, caa.shape[0], cbb.shape[0], metric, k, allow)
        rtol_a, rtol_b = self._rtols(rtol, caa.shape[0], cbb.shape[0])
        return _from_blocks(
            metric, caa, cbb, cab, self.n, variance, rule, k, rtol_a, rtol_b, safe=False
        )

    def cca(self, *, rtol: float | None = DEFAULT_RTOL, allow_underdetermined: bool = False):
        """Mean canonical correlation at the numerical rank (see :func:`cca`)."""
        return self._cca_like("cca", None, "s2", None, rtol, allow_underdetermined)

    def svcca(
        self,
        *,
        variance: float | None = 0.99,
        rule: Rule = "s2",
        k: int | None = None,
        rtol: float | None = DEFAULT_RTOL,
        allow_underdetermined: bool = False,
    ) -> SimilarityResult:
        """SVCCA from the accumulated blocks (see :func:`svcca`)."""
        return self._cca_like("svcca", variance, rule, k, rtol, allow_underdetermined)

    def pwcca(
        self,
        *,
        variance: float | None = None,
        rule: Rule = "s2",
        k: int | None = None,
        rtol: float | None = DEFAULT_RTOL,
        allow_underdetermined: bool = False,
    ) -> SimilarityResult:
        """Paper-definition PWCCA from the accumulated blocks (see :func:`pwcca`)."""
        return self._cca_like("pwcca", variance, rule, k, rtol, allow_underdetermined)

    def linear_cka(self, *, debiased: bool = False) -> SimilarityResult:
        """Linear CKA from the accumulated blocks (see :func:`linear_cka`)."""
        caa, cbb, cab = self._blocks()
        _check_min_tokens(self.n, "debiased CKA" if debiased else "linear CKA", debiased)
        for c, name in ((caa, "a"), (cbb, "b")):
            if not float(c.diagonal().max()) > 0:
                raise _no_variance(name, self.n)
        extra = None
        if debiased:
            st, n = self._s, self.n
            da, db = st["sa"] / n, st["sb"] / n
            extra = dict(
                rr_xy=self._sum_rr("a", "b", da, db, st["sab"]),
                rr_xx=self._sum_rr("a", "a", da, da, st["saa"]),
                rr_yy=self._sum_rr("b", "b", db, db, st["sbb"]),
                sq_x=caa.trace(),
                sq_y=cbb.trace(),
            )
        value = _cka_value(
            cab.square().sum(), caa.square().sum(), cbb.square().sum(), self.n, debiased, extra
        )
        name = "cka_debiased" if debiased else "cka"
        return SimilarityResult(name, value, int(caa.shape[0]), int(cbb.shape[0]), self.n)

    def _sum_rr(self, p: str, q: str, dp, dq, s_pq) -> torch.Tensor:
        """Σ_t r_p(t) r_q(t) with r the squared norm of the centred token vector.

        With z the shifted data, δ its mean and c = ‖δ‖², r = ‖z‖² − 2 zᵀδ + c; expanding the
        product needs only the accumulated sums.
        """
        st, n = self._s, self.n
        cp, cq = dp @ dp, dq @ dq
        qq = st[f"q{p}q{q}"]
        return (
            qq
            - 2 * dq @ st[f"q{p}_z{q}"]
            + cq * st["q" + p]
            - 2 * dp @ st[f"q{q}_z{p}"]
            + 4 * dp @ s_pq @ dq
            - 2 * cq * (dp @ st["s" + p])
            + cp * st["q" + q]
            - 2 * cp * (dq @ st["s" + q])
            + n * cp * cq
        )


__all__ = [
    "Prepared",
    "compare_many",
    "compare_prepared",
    "permuted_many",
    "permuted_values",
    "prepare",
    "Baseline",
    "Basis",
    "DEFAULT_RTOL",
    "GramAccumulator",
    "Measure",
    "SimilarityResult",
    "basis",
    "cca",
    "default_rtol",
    "linear_cka",
    "metrics",
    "mutual_knn",
    "n_keep",
    "pairwise",
    "procrustes",
    "procrustes_angular",
    "pwcca",
    "register",
    "rsa",
    "rsa_rows",
    "shuffled_baseline",
    "similarity",
    "svcca",
]
