"""The CCA family: mean canonical correlation (:func:`cca`), SVCCA, PWCCA (paper definition
and the google/svcca-compatible one), from the Gram blocks or from two bases, and its registry
entries."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

import numpy as np
import torch

from analysis.similarity.bases import (
    DEFAULT_RTOL,
    Array,
    Basis,
    Rule,
    SimilarityResult,
    as_tensor,
    centred_float64,
    check_pair,
    check_tokens,
    default_rtol,
    eig_side,
    get_basis,
    gram_accurate,
    gram_resolves,
    gram_rtol,
    mm,
    no_variance,
    pair_product,
    safe_svd,
    self_gram,
)
from analysis.similarity.registry import (
    BASIS_OPTIONS,
    SHAPE,
    BasisCache,
    basis_measure,
    cache_cross,
    register,
)
from analysis.similarity.repeats import check_pair_distinct

# --------------------------------------------------------------------------- kernels


def _from_blocks(metric, caa, cbb, cab, n, variance, rule, k, rtol_a, rtol_b, safe: bool):
    """CCA-family result from centred Gram blocks: U_aᵀU_b = S_a⁻¹V_aᵀ C_ab V_b S_b⁻¹.

    ``rtol_a``/``rtol_b`` are the requested cuts (raised to what the Gram route resolves).
    With ``safe``, returns None when a kept direction is too weak for this route or the
    spectrum has values between the two cuts.
    """
    cut_a = gram_rtol(rtol_a, n, caa.shape[0])
    cut_b = gram_rtol(rtol_b, n, cbb.shape[0])
    sa, va, sa_np, ra, ka = eig_side(caa, variance, rule, k, cut_a)
    sb, vb, sb_np, rb, kb = eig_side(cbb, variance, rule, k, cut_b)
    for rank, name in ((ra, "a"), (rb, "b")):
        if rank == 0:
            raise no_variance(name, n)
    if safe and not (
        gram_accurate(sa_np, ka)
        and gram_accurate(sb_np, kb)
        and gram_resolves(sa_np, ra, rtol_a)
        and gram_resolves(sb_np, rb, rtol_b)
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


def _rhos(m: torch.Tensor) -> np.ndarray:
    """Canonical correlations = singular values of U_aᵀU_b, clipped to [0, 1]."""
    if min(m.shape) == 0:
        return np.zeros(0)
    return safe_svd(m, values_only=True).clamp(0.0, 1.0).cpu().numpy()


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
    p, rho, qh = safe_svd(m)
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


def _compare(
    metric: str,
    ba: Basis,
    bb: Basis,
    ka: int,
    kb: int,
    m: torch.Tensor | None = None,
) -> SimilarityResult:
    """CCA-family metric from two bases; ``m`` (= U_a[:, :ka]ᵀ U_b[:, :kb]) may be precomputed."""
    m = pair_product(ba, bb, ka, kb, m)
    n = ba.n_tokens
    if metric == "pwcca":
        res = _pwcca_result(
            m, ba.s_dev[:ka], ba.v[:, :ka], bb.s_dev[:kb], bb.v[:, :kb], n, ba.rank, bb.rank
        )
    else:
        res = _cca_result(metric, m, n, ka, kb, ba.rank, bb.rank)
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
    (package docstring); tokens <= dims raises unless ``allow_underdetermined``.
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
        check_pair(a, b, "pwcca", None, allow_underdetermined)
        check_pair_distinct(a, b, "pwcca", None, allow_underdetermined)
        if isinstance(a, Basis) or isinstance(b, Basis):
            raise ValueError("compat='google' needs the raw activations, not Basis objects")
        return google_pwcca(a, b, epsilon)
    if compat != "paper":
        raise ValueError(f"compat must be 'paper' or 'google', got {compat!r}")
    return _cca_family("pwcca", a, b, variance, rule, k, rtol, method, allow_underdetermined)


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
    n = check_pair(a, b, metric, k, allow)
    check_pair_distinct(a, b, metric, k, allow)
    raw = not (isinstance(a, Basis) or isinstance(b, Basis))
    rtol_a = rtol_b = rtol
    if raw and method in ("auto", "gram"):
        (xc, _, dtype_a), (yc, _, dtype_b) = centred_float64(a, "a"), centred_float64(b, "b")
        if xc.device != yc.device:
            raise ValueError(f"a is on {xc.device} and b on {yc.device}; put them on one device")
        if rtol is None:  # from the inputs' dtypes (xc, yc are float64 copies)
            rtol_a = default_rtol(n, xc.shape[1], dtype_a)
            rtol_b = default_rtol(n, yc.shape[1], dtype_b)
        if method == "gram" or n > max(xc.shape[1], yc.shape[1]):
            caa, cbb = self_gram(xc)[0], self_gram(yc)[0]
            res = _from_blocks(
                metric,
                caa,
                cbb,
                mm(xc.T, yc),
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
    ba, ka = get_basis(a, variance, rule, k, rtol_a, method, "a")
    bb, kb = get_basis(b, variance, rule, k, rtol_b, method, "b")
    if ba.device != bb.device:
        raise ValueError(f"a is on {ba.device} and b on {bb.device}; put them on one device")
    return _compare(metric, ba, bb, ka, kb)


# --------------------------------------------------------------------------- google compat


def _psd_sqrt(mat: np.ndarray) -> np.ndarray:
    """google's positivedef_matrix_sqrt; negative round-off eigenvalues clipped to 0."""
    w, v = np.linalg.eigh(mat)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def google_pwcca(x: Array, y: Array, epsilon: float) -> SimilarityResult:
    """google/svcca ``compute_pwcca`` (pwcca.py + cca_core.get_cca_similarity), in numpy f64.

    Deviations, all outside google's working range: the ``else`` branch uses acts2 (google
    indexes acts1, an IndexError when sizes differ; google/svcca PR #9), means of removed units
    are dropped (google would fail to broadcast), negative round-off eigenvalues of pinv(Σ) are
    clipped (google returns NaN), and the correlations are clipped to [0, 1].
    """
    acts1 = as_tensor(x, "a").to(torch.float64).cpu().numpy().T
    acts2 = as_tensor(y, "b").to(torch.float64).cpu().numpy().T
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


# --------------------------------------------------------------------------- registry entries


def _cca_check(metric: str):
    def check(n: int, d: int, opts: dict) -> None:
        check_tokens(n, d, d, metric, opts.get("k"), opts["allow_underdetermined"])

    return check


def _via_compare(metric: str):
    """compare() of a CCA-family entry: :func:`_compare` on the caches' bases."""

    def compare(ca: BasisCache, cb: BasisCache, opts: dict, m=None) -> SimilarityResult:
        if m is None:
            m = cache_cross(ca, cb, opts)
        return _compare(metric, ca.basis, cb.basis, ca.k, cb.k, m)

    return compare


_CCA_OPTIONS = {**BASIS_OPTIONS, "allow_underdetermined": False}
_TRUNC_OPTIONS = {"variance": None, "rule": "s2", "k": None}

def _truncated(opts: Mapping[str, object]) -> str:
    """How a CCA-family result names its directions: a fixed k, a variance share, or the
    numerical rank."""
    if opts.get("k") is not None:
        return f"k={opts['k']}"
    if opts.get("variance") is not None:
        return f"{opts['rule']}:{opts['variance']:g}"
    return "rank"


# CCA is invariant to any invertible linear map of one side; SVCCA's variance cut and PWCCA's
# weights are not, but SVCCA keeps the rotation and isotropic scaling invariance. All three
# go to 1 once the directions kept reach the rank: rank_limited (tokens and distinct rows)
register(basis_measure("cca", _cca_check, _via_compare("cca"), _CCA_OPTIONS, label="CCA",
                        order=0, invariant=SHAPE | {"invertible_linear"},
                        truncation=_truncated, rank_limited=True))
register(basis_measure("svcca", _cca_check, _via_compare("svcca"),
                        {**_CCA_OPTIONS, **_TRUNC_OPTIONS, "variance": 0.99}, label="SVCCA",
                        order=1, invariant=SHAPE, truncation=_truncated, rank_limited=True))
register(basis_measure("pwcca", _cca_check, _via_compare("pwcca"),
                        {**_CCA_OPTIONS, **_TRUNC_OPTIONS, "compat": "paper"}, label="PWCCA",
                        order=2, symmetric=False, truncation=_truncated, rank_limited=True))
