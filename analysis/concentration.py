"""Concentration c(x) = ‖x‖₂ / ‖x‖₁ of token vectors (Saphra & Lopez 2018) and its summaries.

c is scale invariant with 1/√d ≤ c ≤ 1 for a nonzero x ∈ R^d: 1 for a one-hot vector
(concentrated), 1/√d when every |x_i| is equal (dispersed). It is computed per token vector
(the last axis), in float64 because ‖x‖₁ of fp16 data overflows. A zero
vector (dead unit set, zero gradient) has no concentration: it gives NaN, and every summary
counts those NaNs instead of hiding them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch

Array = np.ndarray | torch.Tensor

# Bootstrap resamples are drawn in chunks of at most this many indices.
_BOOT_CHUNK = 2_000_000


def concentration(x: Array, normalize: Literal["hoyer"] | None = None) -> np.ndarray:
    """c = ‖x‖₂/‖x‖₁ of every vector along the last axis of ``x`` (e.g. tokens × dims).

    Returns float64 of shape ``x.shape[:-1]``; zero vectors give NaN. Each vector is divided by
    its largest |x_i| first (c is scale invariant), so neither tiny nor huge values under- or
    overflow. ``normalize="hoyer"``
    returns the Hoyer sparsity (√d − 1/c)/(√d − 1) ∈ [0, 1] instead, which removes the width
    dependence of c when comparing layers of different sizes d.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach().to(torch.float64)
        if not bool(torch.isfinite(t).all()):
            raise ValueError("x contains NaN or inf; concentration needs finite values")
        if t.ndim == 0 or t.shape[-1] == 0:
            raise ValueError("x needs a last axis of at least one dimension")
        t = t / t.abs().amax(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
        l2 = torch.linalg.vector_norm(t, ord=2, dim=-1).cpu().numpy()
        l1 = torch.linalg.vector_norm(t, ord=1, dim=-1).cpu().numpy()
        d = t.shape[-1]
    else:
        a = np.asarray(x, dtype=np.float64)
        if not np.isfinite(a).all():
            raise ValueError("x contains NaN or inf; concentration needs finite values")
        if a.ndim == 0 or a.shape[-1] == 0:
            raise ValueError("x needs a last axis of at least one dimension")
        a = a / np.maximum(np.abs(a).max(axis=-1, keepdims=True), np.finfo(np.float64).tiny)
        l2 = np.sqrt(np.einsum("...i,...i->...", a, a))
        l1 = np.abs(a).sum(axis=-1)
        d = a.shape[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(l1 > 0, l2 / np.where(l1 > 0, l1, 1.0), np.nan)
        if normalize is None:
            return c
        if normalize != "hoyer":
            raise ValueError(f"normalize must be None or 'hoyer', got {normalize!r}")
        if d < 2:
            raise ValueError("Hoyer sparsity needs at least 2 dims")
        root = np.sqrt(d)
        return (root - 1.0 / c) / (root - 1.0)


def nan_count(values: Array) -> int:
    """Number of NaN values, e.g. zero vectors in a :func:`concentration` output."""
    if isinstance(values, torch.Tensor):
        return int(torch.isnan(values).sum())
    return int(np.isnan(np.asarray(values, dtype=np.float64)).sum())


def _boot_means(vals: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_boot`` resamples (with replacement) of ``vals``, drawn in chunks."""
    n = vals.size
    out = np.empty(n_boot)
    step = max(1, _BOOT_CHUNK // max(n, 1))
    for lo in range(0, n_boot, step):
        hi = min(n_boot, lo + step)
        out[lo:hi] = vals[rng.integers(0, n, size=(hi - lo, n))].mean(axis=1)
    return out


def _interval(boot: np.ndarray, ci: float) -> tuple[float, float]:
    if boot.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(boot, [(1 - ci) / 2, (1 + ci) / 2])
    return float(lo), float(hi)


def _check_ci(n_boot: int, ci: float) -> None:
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")


def aggregate_by_tag(
    values: Array,
    tags: Sequence | np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Per-tag mean, median and percentile-bootstrap CI of the mean over tokens.

    Columns: tag, mean, median, ci_low, ci_high, n_tokens (all tokens with the tag), n_nan
    (those with a NaN value, excluded from the statistics). Tokens are resampled
    independently, so tokens of one frequent word make the CI optimistic.
    """
    _check_ci(n_boot, ci)
    vals = _values(values)
    tags = np.asarray(tags)
    if tags.shape != vals.shape:
        raise ValueError(f"values has shape {vals.shape} but tags {tags.shape}")
    rng = np.random.default_rng(seed)
    codes, uniques = pd.factorize(tags, sort=True)
    rows = []
    for code, tag in enumerate(uniques):
        v = vals[codes == code]
        finite = v[~np.isnan(v)]
        row = dict(tag=tag, mean=np.nan, median=np.nan, ci_low=np.nan, ci_high=np.nan)
        if finite.size:
            row.update(mean=float(finite.mean()), median=float(np.median(finite)))
            if n_boot:
                row["ci_low"], row["ci_high"] = _interval(_boot_means(finite, n_boot, rng), ci)
        row.update(n_tokens=int(v.size), n_nan=int(v.size - finite.size))
        rows.append(row)
    columns = ["tag", "mean", "median", "ci_low", "ci_high", "n_tokens", "n_nan"]
    return pd.DataFrame(rows, columns=columns)


def _values(values: Array) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    vals = np.asarray(values, dtype=np.float64)
    if vals.ndim != 1:
        raise ValueError(f"values must be 1-D (one per token), got shape {vals.shape}")
    return vals


@dataclass(frozen=True, eq=False)
class FrequencyMatched:
    """Difference mean(groups[0]) − mean(groups[1]) within word-frequency bins.

    ``difference`` is the weighted mean of the per-bin differences, ``ci_low``/``ci_high`` its
    stratified-bootstrap interval, ``bins`` one row per bin populated by both groups;
    ``p_value`` the one-sided permutation p of difference > 0 (group labels permuted within
    each frequency bin; NaN without permutations).
    """

    difference: float
    ci_low: float
    ci_high: float
    bins: pd.DataFrame
    groups: tuple
    weight: str
    n_dropped: int
    p_value: float = float("nan")


def frequency_matched_difference(
    values: Array,
    group: Sequence | np.ndarray,
    freq: Array,
    *,
    n_bins: int = 10,
    order: tuple | None = None,
    weight: Literal["harmonic", "tokens", "first"] = "harmonic",
    min_count: int = 1,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    n_perm: int = 0,
) -> FrequencyMatched:
    """Compare two groups of tokens (e.g. function vs content words) at matched frequency.

    Tokens outside the log-frequency range shared by both groups are dropped; the shared range
    is cut into ``n_bins`` quantile bins of log(freq) over the pooled tokens, and bins with
    fewer than ``min_count`` tokens of either group are dropped. The per-bin differences are
    averaged with weights n_a·n_b/(n_a+n_b) (``"harmonic"``, Mantel–Haenszel style), n_a+n_b
    (``"tokens"``) or n_a (``"first"``: standardised to the first group's frequencies).
    ``group`` is boolean (``order`` defaults to (True, False)) or two labels (default: sorted).
    ``n_dropped`` counts the tokens not used (NaN value, non-positive frequency, another
    group, outside the shared range, or in a dropped bin). ``n_perm`` permutations of the
    group labels within each bin give the one-sided ``p_value`` of a difference > 0.
    """
    _check_ci(n_boot, ci)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if weight not in ("harmonic", "tokens", "first"):
        raise ValueError(f"weight must be 'harmonic', 'tokens' or 'first', got {weight!r}")
    vals = _values(values)
    freq = _values(freq)
    group = np.asarray(group)
    if not vals.shape == freq.shape == group.shape:
        raise ValueError(
            f"shapes differ: values {vals.shape}, group {group.shape}, freq {freq.shape}"
        )
    if order is None:
        order = (True, False) if group.dtype == bool else tuple(np.unique(group))
    if len(order) != 2:
        raise ValueError(f"need exactly two groups, got {list(order)}; pass order=(g_a, g_b)")
    in_a, in_b = group == order[0], group == order[1]
    ok = ~np.isnan(vals) & np.isfinite(freq) & (freq > 0) & (in_a | in_b)
    logf = np.log(np.where(ok, freq, 1.0))
    if not (ok & in_a).any() or not (ok & in_b).any():
        raise ValueError(f"both groups {order} need tokens with a value and a positive frequency")
    lo = max(logf[ok & in_a].min(), logf[ok & in_b].min())
    hi = min(logf[ok & in_a].max(), logf[ok & in_b].max())
    ok &= (logf >= lo) & (logf <= hi)
    if not (ok & in_a).any() or not (ok & in_b).any():
        raise ValueError("the two groups share no word-frequency range: nothing to match")
    edges = np.unique(np.quantile(logf[ok], np.linspace(0, 1, n_bins + 1)))
    bin_of = np.searchsorted(edges[1:-1], logf, side="right")
    rng = np.random.default_rng(seed)
    rows, boot, pooled = [], np.zeros(n_boot), []
    for b in range(max(len(edges) - 1, 1)):
        va = vals[ok & in_a & (bin_of == b)]
        vb = vals[ok & in_b & (bin_of == b)]
        if min(va.size, vb.size) < max(min_count, 1):
            continue
        w = {
            "harmonic": va.size * vb.size / (va.size + vb.size),
            "tokens": va.size + vb.size,
            "first": va.size,
        }[weight]
        f_lo, f_hi = np.exp(edges[b]), np.exp(edges[min(b + 1, len(edges) - 1)])
        rows.append(
            dict(
                bin=b,
                freq_low=f_lo,
                freq_high=f_hi,
                n_a=va.size,
                n_b=vb.size,
                mean_a=va.mean(),
                mean_b=vb.mean(),
                diff=va.mean() - vb.mean(),
                weight=float(w),
            )
        )
        if n_boot:
            boot += w * (_boot_means(va, n_boot, rng) - _boot_means(vb, n_boot, rng))
        pooled.append((np.concatenate([va, vb]), va.size, w))
    if not rows:
        raise ValueError(f"no frequency bin holds >= {min_count} tokens of both groups")
    bins = pd.DataFrame(rows)
    total_w = bins["weight"].sum()
    difference = float((bins["weight"] * bins["diff"]).sum() / total_w)
    ci_low, ci_high = _interval(boot / total_w if n_boot else np.zeros(0), ci)
    n_dropped = int(vals.size - bins["n_a"].sum() - bins["n_b"].sum())
    p = _permutation_p(pooled, total_w, difference, n_perm, rng) if n_perm else float("nan")
    return FrequencyMatched(difference, ci_low, ci_high, bins, tuple(order), weight, n_dropped,
                            p)


def _permutation_p(pooled: list, total_w: float, observed: float, n_perm: int, rng) -> float:
    """One-sided p of the weighted difference under group labels permuted within bins."""
    null = np.zeros(n_perm)
    for values, n_a, w in pooled:
        order = np.argsort(rng.random((n_perm, values.size)), axis=1)
        shuffled = values[order]
        null += w * (shuffled[:, :n_a].mean(1) - shuffled[:, n_a:].mean(1))
    null /= total_w
    return float((1 + np.sum(null >= observed - 1e-12)) / (n_perm + 1))


__all__ = [
    "FrequencyMatched",
    "aggregate_by_tag",
    "concentration",
    "frequency_matched_difference",
    "nan_count",
]
