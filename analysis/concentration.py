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

    ``difference`` is the weighted mean of the per-bin differences of token means; ``ci_low``/
    ``ci_high`` its percentile interval under the bootstrap that resamples units with
    replacement within each bin and group; ``p_value`` the one-sided permutation p of
    difference > 0 (group labels permuted among the units of each bin; NaN without
    permutations). A unit is a word type (``unit == "type"``) or a token (``"token"``).
    ``bins`` has one row per bin populated by both groups: token counts ``n_a``/``n_b``, unit
    counts ``k_a``/``k_b``, token means, their difference and the bin's weight.
    """

    difference: float
    ci_low: float
    ci_high: float
    bins: pd.DataFrame
    groups: tuple
    weight: str
    n_dropped: int
    p_value: float = float("nan")
    unit: str = "token"


def frequency_matched_difference(
    values: Array,
    group: Sequence | np.ndarray,
    freq: Array,
    *,
    types: Sequence | np.ndarray | None = None,
    n_bins: int = 10,
    order: tuple | None = None,
    weight: Literal["harmonic", "units", "first"] = "harmonic",
    min_count: int = 1,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    n_perm: int = 0,
) -> FrequencyMatched:
    """Compare two groups of tokens (e.g. function vs content words) at matched frequency.

    With ``types`` (one word type per token) the unit of resampling is the type: its tokens
    share its group label, so they are not independent draws. A type is its tokens with one
    (type, group) pair, so a word never straddles groups, and its frequency is the geometric
    mean of its tokens' (one value per word in the probe tables), so it never straddles bins.
    Without ``types`` every token is its own unit (the token-level test).

    Units outside the log-frequency range shared by both groups are dropped; the shared range
    is cut into ``n_bins`` bins at quantiles of log(freq) over the pooled units, each group
    weighted equally (:func:`_balanced_edges`); bins without both groups are dropped and bins
    with fewer than ``min_count`` units of a group merged with the next (:func:`_merge_bins`).
    Within a bin each group's mean is over its tokens (per-unit sums and counts); the per-bin
    differences are averaged with weights k_a·k_b/(k_a+k_b) (``"harmonic"``, Mantel–Haenszel
    style), k_a+k_b (``"units"``) or k_a (``"first"``: standardised to the first group), k
    counting units (fixed under the bootstrap and the permutations).
    ``group`` is boolean (``order`` defaults to (True, False)) or two labels (default: sorted).
    ``n_dropped`` counts the tokens not used (NaN value, non-positive frequency, another
    group, outside the shared range, or in a dropped bin). ``n_perm`` permutations of the
    unit labels within each bin give the one-sided ``p_value`` of a difference > 0; the
    bootstrap resamples units with replacement within each bin and group.
    """
    _check_ci(n_boot, ci)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if n_perm < 0:
        raise ValueError(f"n_perm must be >= 0, got {n_perm}")
    if weight not in ("harmonic", "units", "first"):
        raise ValueError(f"weight must be 'harmonic', 'units' or 'first', got {weight!r}")
    vals = _values(values)
    freq = _values(freq)
    group = np.asarray(group)
    if not vals.shape == freq.shape == group.shape:
        raise ValueError(
            f"shapes differ: values {vals.shape}, group {group.shape}, freq {freq.shape}"
        )
    if types is not None and np.shape(types) != vals.shape:
        raise ValueError(f"types has shape {np.shape(types)} but values {vals.shape}")
    if order is None:
        order = (True, False) if group.dtype == bool else tuple(np.unique(group))
    if len(order) != 2:
        raise ValueError(f"need exactly two groups, got {list(order)}; pass order=(g_a, g_b)")
    in_a, in_b = group == order[0], group == order[1]
    ok = ~np.isnan(vals) & np.isfinite(freq) & (freq > 0) & (in_a | in_b)
    if not (ok & in_a).any() or not (ok & in_b).any():
        raise ValueError(f"both groups {order} need tokens with a value and a positive frequency")
    s, c, logf, is_a = _units(vals[ok], np.log(freq[ok]), in_a[ok],
                              None if types is None else np.asarray(types)[ok])
    lo = max(logf[is_a].min(), logf[~is_a].min())
    hi = min(logf[is_a].max(), logf[~is_a].max())
    keep = (logf >= lo) & (logf <= hi)
    if not (keep & is_a).any() or not (keep & ~is_a).any():
        raise ValueError("the two groups share no word-frequency range: nothing to match")
    edges = _balanced_edges(logf[keep], is_a[keep], n_bins)
    bin_of = np.searchsorted(edges[1:-1], logf, side="right")
    bin_of, spans = _merge_bins(np.where(keep, bin_of, -1), is_a, max(min_count, 1))
    rng = np.random.default_rng(seed)
    rows, boot, pooled = [], np.zeros(n_boot), []
    for b, (first, last) in enumerate(spans):
        a, o = (bin_of == b) & is_a, (bin_of == b) & ~is_a
        k_a, k_b = int(a.sum()), int(o.sum())
        w = {"harmonic": k_a * k_b / (k_a + k_b), "units": k_a + k_b, "first": k_a}[weight]
        mean_a, mean_b = s[a].sum() / c[a].sum(), s[o].sum() / c[o].sum()
        rows.append(dict(bin=b, freq_low=np.exp(edges[first]),
                         freq_high=np.exp(edges[min(last + 1, len(edges) - 1)]),
                         n_a=int(c[a].sum()), n_b=int(c[o].sum()), k_a=k_a, k_b=k_b,
                         mean_a=mean_a, mean_b=mean_b, diff=mean_a - mean_b, weight=float(w)))
        if n_boot:
            boot += w * (_boot_ratios(s[a], c[a], n_boot, rng)
                         - _boot_ratios(s[o], c[o], n_boot, rng))
        pooled.append((np.r_[s[a], s[o]], np.r_[c[a], c[o]], k_a, w))
    bins = pd.DataFrame(rows)
    total_w = bins["weight"].sum()
    difference = float((bins["weight"] * bins["diff"]).sum() / total_w)
    ci_low, ci_high = _interval(boot / total_w if n_boot else np.zeros(0), ci)
    n_dropped = int(vals.size - bins["n_a"].sum() - bins["n_b"].sum())
    p = _permutation_p(pooled, total_w, difference, n_perm, rng) if n_perm else float("nan")
    return FrequencyMatched(difference, ci_low, ci_high, bins, tuple(order), weight, n_dropped,
                            p, "token" if types is None else "type")


def _balanced_edges(logf: np.ndarray, is_a: np.ndarray, n_bins: int) -> np.ndarray:
    """Quantiles of the pooled units' log-frequency with each group weighted equally (the
    midpoints of the cumulative weights, linearly interpolated): bins are fine wherever either
    group is dense. Unweighted quantiles would follow the far more numerous content types and
    put the frequent function words in one wide bin."""
    w = np.where(is_a, 1.0 / is_a.sum(), 1.0 / (~is_a).sum())
    order = np.argsort(logf, kind="stable")
    x, w = logf[order], w[order]
    cum = np.cumsum(w)
    edges = np.interp(np.linspace(0, 1, n_bins + 1), (cum - w / 2) / cum[-1], x)
    edges[0], edges[-1] = x[0], x[-1]
    return edges  # repeated edges leave empty bins, which _merge_bins drops


def _merge_bins(bin_of: np.ndarray, is_a: np.ndarray, min_count: int
                ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Bins of units (``bin_of``, -1: unused) in which both groups have ``min_count`` units.

    Bins without a unit of one group have nothing to match and are dropped; the others are
    merged upwards in frequency until each holds ``min_count`` units of both groups (a short
    run at the top joins the bin below). Returns the merged bin of every unit (-1: unused)
    and, per merged bin, the first and last original bin.
    """
    used = bin_of >= 0
    n = int(bin_of.max()) + 1 if used.any() else 0
    k_a = np.bincount(bin_of[used & is_a], minlength=n)
    k_b = np.bincount(bin_of[used & ~is_a], minlength=n)
    groups: list[list[int]] = []
    run: list[int] = []
    for b in np.flatnonzero((k_a > 0) & (k_b > 0)):
        run.append(int(b))
        if k_a[run].sum() >= min_count and k_b[run].sum() >= min_count:
            groups.append(run)
            run = []
    if run and groups:
        groups[-1] += run
    if not groups:
        raise ValueError(f"no frequency range holds >= {min_count} units of both groups")
    merged = np.full(n + 1, -1)  # index -1 (unused units) reads the last entry: -1
    for g, members in enumerate(groups):
        merged[members] = g
    return merged[bin_of], [(members[0], members[-1]) for members in groups]


def _units(vals: np.ndarray, logf: np.ndarray, in_a: np.ndarray, types: np.ndarray | None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per unit (a (type, group) pair, or each token without types): sum of values, token
    count, mean log frequency, and whether it is of the first group."""
    if types is None:
        return vals, np.ones(vals.size), logf, in_a
    codes, _ = pd.factorize(types)
    if (codes < 0).any():
        raise ValueError("a token with a value and a frequency has no word type")
    unit, _ = pd.factorize(2 * codes.astype(np.int64) + in_a)
    count = np.bincount(unit).astype(float)
    return (np.bincount(unit, vals), count, np.bincount(unit, logf) / count,
            np.bincount(unit, in_a) > 0)


def _boot_ratios(s: np.ndarray, c: np.ndarray, n_boot: int, rng: np.random.Generator
                 ) -> np.ndarray:
    """Token means of ``n_boot`` resamples (with replacement) of units with value sums ``s``
    and token counts ``c``, drawn in chunks."""
    k = s.size
    out = np.empty(n_boot)
    step = max(1, _BOOT_CHUNK // k)
    for lo in range(0, n_boot, step):
        idx = rng.integers(0, k, size=(min(n_boot, lo + step) - lo, k))
        out[lo:lo + len(idx)] = s[idx].sum(axis=1) / c[idx].sum(axis=1)
    return out


def _permutation_p(pooled: list, total_w: float, observed: float, n_perm: int,
                   rng: np.random.Generator) -> float:
    """One-sided p of the weighted difference under unit labels permuted within bins: each
    permutation marks k_a of a bin's units as the first group (a 0/1 row), so the group sums
    are matrix-vector products."""
    null = np.zeros(n_perm)
    for s, c, k_a, w in pooled:
        k, s_all, c_all = s.size, s.sum(), c.sum()
        step = max(1, _BOOT_CHUNK // k)
        for lo in range(0, n_perm, step):
            labels = np.zeros((min(n_perm, lo + step) - lo, k))
            labels[:, :k_a] = 1.0
            labels = rng.permuted(labels, axis=1)
            s_a, c_a = labels @ s, labels @ c
            null[lo:lo + len(labels)] += w * (s_a / c_a - (s_all - s_a) / (c_all - c_a))
    null /= total_w
    return float((1 + np.sum(null >= observed - 1e-12)) / (n_perm + 1))


__all__ = [
    "FrequencyMatched",
    "aggregate_by_tag",
    "concentration",
    "frequency_matched_difference",
    "nan_count",
]
