"""Shape metrics: orthogonal Procrustes similarity and the angular Procrustes distance (Williams
et al. 2021), from two bases, and their registry entries."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from analysis.similarity.bases import DEFAULT_RTOL, Array, Basis, SimilarityResult, safe_svd
from analysis.similarity.registry import (
    BASIS_OPTIONS,
    SHAPE,
    BasisCache,
    basis_measure,
    cache_cross,
    min_tokens_check,
    register,
    similarity,
)


def _procrustes_from_bases(
    ba: Basis, bb: Basis, ka: int, kb: int, m: torch.Tensor
) -> SimilarityResult:
    """‖X_cᵀY_c‖_* / (‖X_c‖_F ‖Y_c‖_F) = ‖S_a (U_aᵀU_b) S_b‖_* / (‖s_a‖ ‖s_b‖), V's dropped
    (orthonormal columns leave the nuclear norm unchanged); s scaled by s_max first."""
    sa, sb = ba.s_dev[:ka] / ba.s_dev[0], bb.s_dev[:kb] / bb.s_dev[0]
    c = sa[:, None] * m * sb[None, :]
    nuclear = safe_svd(c, values_only=True).sum()
    value = float(nuclear / torch.sqrt((sa * sa).sum() * (sb * sb).sum()))
    value = min(max(value, 0.0), 1.0)  # <= 1 by von Neumann's trace inequality
    return SimilarityResult(
        "procrustes", value, ka, kb, ba.n_tokens, ba.rank, bb.rank, rtol_a=ba.rtol, rtol_b=bb.rtol
    )


def _procrustes_compare(ca: BasisCache, cb: BasisCache, opts: dict, m=None):
    if m is None:
        m = cache_cross(ca, cb, opts)
    return _procrustes_from_bases(ca.basis, cb.basis, ca.k, cb.k, m)


def _procrustes_angular_compare(ca: BasisCache, cb: BasisCache, opts: dict, m=None):
    res = _procrustes_compare(ca, cb, opts, m)
    return dataclasses.replace(
        res, metric="procrustes_angular", value=float(np.arccos(res.value)), kind="distance"
    )


register(basis_measure("procrustes", min_tokens_check, _procrustes_compare, BASIS_OPTIONS,
                        label="Procrustes", order=5, invariant=SHAPE))
register(basis_measure("procrustes_angular", min_tokens_check, _procrustes_angular_compare,
                        BASIS_OPTIONS, label="Procrustes angle (distance)", order=8,
                        kind="distance", invariant=SHAPE))


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
