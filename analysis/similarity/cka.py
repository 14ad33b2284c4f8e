"""Linear CKA (Kornblith et al. 2019), biased and debiased (unbiased HSIC), from the arrays or
from two bases, and its registry entries (``cka``, ``cka_debiased``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from analysis.similarity.bases import (
    DEFAULT_RTOL,
    Array,
    Basis,
    SimilarityResult,
    centred_float64,
    check_min_tokens,
    check_pair,
    get_basis,
    max_abs,
    mm,
    no_variance,
    pair_product,
)
from analysis.similarity.registry import (
    BASIS_OPTIONS,
    SHAPE,
    BasisCache,
    basis_measure,
    cache_cross,
    min_tokens_check,
    register,
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
        check_min_tokens(n, "debiased CKA", debiased=True)
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
    ba: Basis,
    bb: Basis,
    ka: int,
    kb: int,
    m: torch.Tensor | None = None,
    debiased: bool = False,
) -> SimilarityResult:
    """CKA from two bases; ``m`` (= U_a[:, :ka]ᵀ U_b[:, :kb]) may be precomputed."""
    m = pair_product(ba, bb, ka, kb, m)
    res = _cka_from_bases(ba, bb, m, debiased)
    return dataclasses.replace(res, rtol_a=ba.rtol, rtol_b=bb.rtol)


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
    n = check_pair(a, b, "cka")
    check_min_tokens(n, "debiased CKA" if debiased else "linear CKA", debiased)
    if isinstance(a, Basis) or isinstance(b, Basis):
        ba, _ = get_basis(a, None, "s2", None, rtol, method, "a")
        bb, _ = get_basis(b, None, "s2", None, rtol, method, "b")
        if ba.device != bb.device:
            raise ValueError(f"a is on {ba.device} and b on {bb.device}; put them on one device")
        return _compare(ba, bb, ba.k, bb.k, debiased=debiased)
    (xc, _, _), (yc, _, _) = centred_float64(a, "a"), centred_float64(b, "b")
    if xc.device != yc.device:
        raise ValueError(f"a is on {xc.device} and b on {yc.device}; put them on one device")
    for t, name in ((xc, "a"), (yc, "b")):  # CKA is scale invariant; unit scale keeps the
        top = max_abs(t)  # 4th powers finite
        if top == 0:
            raise no_variance(name, n)
        t /= top
    xty = mm(xc.T, yc).square().sum()
    xx, yy = mm(xc.T, xc).square().sum(), mm(yc.T, yc).square().sum()
    extra = None
    if debiased:
        rx, ry = torch.linalg.vector_norm(xc, dim=1) ** 2, torch.linalg.vector_norm(yc, dim=1) ** 2
        extra = _cka_extra(rx, ry)
    value = _cka_value(xty, xx, yy, n, debiased, extra)
    name = "cka_debiased" if debiased else "cka"
    return SimilarityResult(name, value, int(xc.shape[1]), int(yc.shape[1]), n)


def _via_compare(debiased: bool | None = None):
    """compare() of a CKA entry: :func:`_compare` on the caches' bases, debiased as fixed
    here (None: as the ``debiased`` option says)."""

    def compare(ca: BasisCache, cb: BasisCache, opts: dict, m=None) -> SimilarityResult:
        deb = opts.get("debiased", False) if debiased is None else debiased
        if m is None:
            m = cache_cross(ca, cb, opts)
        return _compare(ca.basis, cb.basis, ca.k, cb.k, m, deb)

    return compare


register(basis_measure("cka", min_tokens_check, _via_compare(),
                        {**BASIS_OPTIONS, "debiased": False}, label="linear CKA", order=3,
                        invariant=SHAPE))
register(basis_measure("cka_debiased", min_tokens_check, _via_compare(debiased=True),
                        {**BASIS_OPTIONS, "debiased": True}, label="debiased CKA", order=4,
                        invariant=SHAPE))
