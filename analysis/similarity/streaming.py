"""Streamed Gram route: :class:`GramAccumulator` accumulates float64 Gram blocks chunk by chunk
for token sets too big for memory, then gives CCA, SVCCA, PWCCA and linear CKA."""

from __future__ import annotations

import torch

from analysis.similarity.bases import (
    DEFAULT_RTOL,
    Array,
    Rule,
    SimilarityResult,
    _as_tensor,
    _check_finite,
    _check_min_tokens,
    _check_tokens,
    _column_range,
    _input_eps,
    _max_abs,
    _mm,
    _no_variance,
    default_rtol,
)
from analysis.similarity.canonical import _from_blocks
from analysis.similarity.cka import _cka_value


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
