"""The machinery every metric shares: tokens × dims input checks and centring, the rank cut
(:func:`default_rtol`, :func:`n_keep`), :class:`Basis` and :func:`basis`, the float64 product
kernels (``mm``, ``_syrk``, ``cross_product``), :class:`SimilarityResult` and the errors for
inputs a metric is undefined for."""

from __future__ import annotations

import dataclasses
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
BLOCK_BYTES = 256 * 2**20

_CCA_FAMILY = ("cca", "svcca", "pwcca")


@dataclass(frozen=True, eq=False)
class Basis:
    """Centred, orthonormal token-space basis of one representation (an SVD x_c = U S Vᵀ).

    ``u`` (tokens × k) and ``v`` (dims × k) hold the leading ``k`` directions in float64 on the
    input's device; ``s`` holds every singular value above the numerical rank (CPU, float64),
    so a truncation rule can be re-applied. ``rtol`` is the rank cut that was applied
    (relative to s_max), ``mean`` the per-unit means that centring removed (float64, dims),
    so that a full-rank basis still describes the raw rows: x ≈ u s vᵀ + mean.
    ``n_distinct`` counts the input's distinct rows (exact equality; an embedding's repeat per
    word type): the centred rank is at most n_distinct - 1 (the CCA family's row guard).
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
    n_distinct: int | None = None

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
    ``n_rows_used`` the tokens RSA used (a subsample above ``max_rows``) or the distinct rows
    mutual k-NN ran on, ``n_neighbors`` its k. For mutual_knn and rsa, ``k_a``/``k_b`` are
    the dims.
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


# --------------------------------------------------------------------------- input handling


def as_tensor(x: Array, name: str) -> torch.Tensor:
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


def centred_float64(x: Array, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.dtype]:
    """float64 copy of ``x`` with every unit centred over tokens, the means removed and the
    input dtype; rejects NaN/inf. Units that are exactly constant become exactly zero."""
    t = as_tensor(x, name)
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


def no_variance(name: str, n_tokens: int) -> ValueError:
    return ValueError(
        f"{name} has no variance: every unit is constant over the {n_tokens} tokens (e.g. all "
        f"zero), so its similarity to anything is undefined"
    )


def check_min_tokens(n_tokens: int, metric: str, debiased: bool = False) -> None:
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


def max_abs(x: torch.Tensor) -> float:
    """Largest |x| (0.0 for an all-zero or empty tensor)."""
    if x.numel() == 0:
        return 0.0
    lo, hi = torch.aminmax(x)
    return max(-float(lo), float(hi))


def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
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
PRODUCTS = ("float64", "float32")


def mm32(a32: torch.Tensor, b32: torch.Tensor) -> torch.Tensor:
    """a32ᵀ b32 (tokens × k each, float32) as float64: float32 products over token chunks,
    the chunk sums added in float64 (a float32 accumulator over 50k tokens would lose ~1e-6
    on correlations near 1)."""
    out = torch.zeros(a32.shape[1], b32.shape[1], dtype=torch.float64, device=a32.device)
    for lo in range(0, a32.shape[0], _CHUNK_TOKENS):
        out += mm(a32[lo : lo + _CHUNK_TOKENS].T, b32[lo : lo + _CHUNK_TOKENS])
    return out


def cross_product(ua: torch.Tensor, ub: torch.Tensor, products: str = "float64") -> torch.Tensor:
    """U_aᵀU_b of two orthonormal token-space bases, in float64 or from float32 products.

    float32 rounds each entry of U by <= 6e-8 relative, which moves each canonical
    correlation by ~1e-7 and their mean by ~1e-8 (checked to 1e-6 by the tests and the
    benchmark); it halves the time and, in pairwise, the memory of the held bases."""
    if products == "float32":
        return mm32(ua.float(), ub.float())
    return mm(ua.T, ub)


def tokens_dims(x: Array | Basis, name: str) -> tuple[int, int]:
    if isinstance(x, Basis):
        return x.n_tokens, x.n_dims
    t = as_tensor(x, name)
    return int(t.shape[0]), int(t.shape[1])


def check_pair(
    a: Array | Basis,
    b: Array | Basis,
    metric: str,
    k: int | None = None,
    allow_underdetermined: bool = False,
) -> int:
    """Validate a pair (same token count, enough tokens for CCA); return the token count."""
    (na, da), (nb, db) = tokens_dims(a, "a"), tokens_dims(b, "b")
    if na != nb:
        raise ValueError(
            f"a has {na} tokens and b has {nb}: both must hold the same tokens in the same order"
        )
    if metric in _CCA_FAMILY:
        check_tokens(na, da, db, metric, k, allow_underdetermined)
    return na


def check_tokens(n_tokens: int, da: int, db: int, metric: str, k: int | None, allow: bool) -> None:
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


EPS64 = float(np.finfo(np.float64).eps)


def _input_eps(dtype) -> float:
    """Relative precision of an input dtype (numpy or torch); integers and bools count as exact
    (they are converted to float64, the working precision)."""
    if isinstance(dtype, torch.dtype):
        return float(torch.finfo(dtype).eps) if dtype.is_floating_point else EPS64
    dtype = np.dtype(dtype)
    return float(np.finfo(dtype).eps) if dtype.kind == "f" else EPS64


def default_rtol(n_tokens: int, n_dims: int, dtype) -> float:
    """The default rank cut (relative to s_max) for a tokens × dims input of ``dtype``.

    ``max(40 · sqrt(min(tokens, dims)) · eps(dtype), max(tokens, dims) · eps(float64))``,
    capped at 1e-2: the first term bounds what rounding the input to its dtype can do to the
    singular values, with a margin for float32 LayerNorm null directions (see _RTOL_C), the
    second the float64 SVD's own rounding. E.g. 200 dims: 6.7e-5 for float32 input,
    1.1e-13 (500 tokens) .. 1.1e-11 (50k tokens) for float64.
    """
    n, d = int(n_tokens), int(n_dims)
    rtol = max(_RTOL_C * np.sqrt(max(min(n, d), 1)) * _input_eps(dtype), max(n, d) * EPS64)
    return float(min(rtol, _RTOL_MAX))


def gram_rtol(rtol: float, n_tokens: int, n_dims: int) -> float:
    """The cut the Gram route can honour: eigh of a float64 Gram resolves eigenvalues down to
    about max(tokens, dims)·eps·λ_max (measured: null directions read as s ~ 1.5e-8·s_max),
    i.e. singular values down to sqrt of that."""
    return max(rtol, float(np.sqrt(max(n_tokens, n_dims) * EPS64)))


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
    xc, mean, dtype = centred_float64(x, "x")
    n_tokens, n_dims = xc.shape
    n_distinct = count_distinct(xc)  # equal input rows stay equal after centring
    if rtol is None:
        rtol = default_rtol(n_tokens, n_dims, dtype)
    use_gram = method == "gram" or (method == "auto" and n_tokens > n_dims)
    scale = 1.0
    if use_gram:
        gram, scale = self_gram(xc)
        cut = gram_rtol(rtol, n_tokens, n_dims)
        s_dev, vecs, s_all, rank, kk = eig_side(gram, variance, rule, k, cut)
        if method == "auto" and not (gram_accurate(s_all, kk) and gram_resolves(s_all, rank, rtol)):
            use_gram = False
        else:
            if method == "gram":  # else the rank is the same at rtol (gram_resolves)
                rtol = cut
            v = vecs[:, :kk].contiguous()
            u = mm(xc, v)
            u /= s_dev[:kk]
    if not use_gram:
        u_full, s_dev, vh = safe_svd(xc)
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
        n_distinct=n_distinct,
    )


def count_distinct(t: torch.Tensor) -> int:
    """Number of distinct rows of ``t`` (exact equality; torch.unique: ~0.01 s at 5000 × 512)."""
    return int(torch.unique(t, dim=0).shape[0])


def gram_resolves(s: np.ndarray, rank: int, rtol: float) -> bool:
    """Whether the Gram route's rank (cut at gram_rtol) is also the rank at ``rtol``: no
    singular value lies between the two cuts, where the Gram route cannot tell signal from
    its own rounding."""
    return _rank(s, rtol) == rank


def self_gram(xc: torch.Tensor) -> tuple[torch.Tensor, float]:
    """xcᵀxc in float64. If the squares under/overflow, xc is first divided in place by its
    largest |value|, which is returned (else 1.0); every metric here is scale invariant."""
    with np.errstate(over="ignore", invalid="ignore"):  # checked just below
        gram = mm(xc.T, xc)
    if 1e-250 < float(gram.trace()) < 1e250:
        return gram, 1.0
    scale = max_abs(xc) or 1.0
    xc /= scale
    return mm(xc.T, xc), scale


def eig_side(c: torch.Tensor, variance, rule, k, rtol):
    """Eigen-decomposition of a centred Gram block: s (descending, device), V, s on the CPU,
    numerical rank and the number of directions to keep."""
    lam, vecs = torch.linalg.eigh(c)
    s = lam.flip(0).clamp_min(0).sqrt()
    s_np = s.cpu().numpy()
    rank = _rank(s_np, rtol)
    return s, vecs.flip(1), s_np, rank, n_keep(s_np[:rank], variance, rule, k)


def gram_accurate(s: np.ndarray, kk: int) -> bool:
    """Whether the Gram route is accurate for the kept directions (see _GRAM_SAFE)."""
    return kk == 0 or s[kk - 1] >= _GRAM_SAFE * s[0]


def get_basis(
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


def safe_svd(m: torch.Tensor, values_only: bool = False):
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


def pair_product(
    ba: Basis, bb: Basis, ka: int, kb: int, m: torch.Tensor | None = None
) -> torch.Tensor:
    """U_a[:, :ka]ᵀ U_b[:, :kb] of two bases (``m`` if precomputed), after refusing a basis
    without variance: the common start of every basis family's ``_compare``."""
    for b, name in ((ba, "a"), (bb, "b")):
        if b.rank == 0:
            raise no_variance(name, b.n_tokens)
    if m is None:
        m = mm(ba.u[:, :ka].T, bb.u[:, :kb])
    return m


# --------------------------------------------------------------------------- undefined inputs


class Undefined(ValueError):
    """A representation the metric is undefined for (e.g. no variance): single calls raise
    it, pairwise/shuffled_baseline turn it into NaN cells with the message as reason."""


def no_variance_error(name: str, n_tokens: int) -> Undefined:
    return Undefined(str(no_variance(name, n_tokens)))


def raw_rows(x: Array | Basis, name: str, rows: np.ndarray | None = None) -> torch.Tensor:
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
    t = as_tensor(x, name)
    if rows is not None:
        t = t[torch.as_tensor(rows, device=t.device)]
    out = t.to(torch.float64)
    _check_finite(out.sum(0), out, name)
    return out


def unit_norm_rows(x: torch.Tensor, name: str, what: str, why: str) -> torch.Tensor:
    """Rows divided by their l2 norms; a zero row has no direction."""
    norms = torch.linalg.vector_norm(x, dim=1)
    zero = norms == 0
    if bool(zero.any()):
        raise Undefined(
            f"{name} has {int(zero.sum())} {what} row(s) (first: token "
            f"{int(torch.nonzero(zero)[0, 0])}): {why} is 0/0"
        )
    return x / norms[:, None]


def same_rows(x: torch.Tensor) -> bool:
    return bool(_constant_columns(x).all())
