"""The metrics a run reports and one comparison of two representations: each representation's
full-rank basis is built once and shared by every metric (any truncation) and every pair it
takes part in; a metric that cannot be computed gives a NaN row with its reason."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from analysis import similarity as sim
from analysis.settings import AnalysisSettings


@dataclass(frozen=True)
class MetricSpec:
    """One reported metric: the registered metric it runs, its options and how its rows name
    the directions it used (``variance_rule``)."""

    name: str
    base: str
    kwargs: Mapping
    variance_rule: str


# The analysis settings that set a registered metric's options (the other options keep the
# registry's defaults), and the name that expands to one SVCCA per fixed k.
OPTION_SETTINGS = {"svcca": {"variance": "variance", "rule": "variance_rule"},
                   "mutual_knn": {"k": "knn_k"},
                   "rsa": {"max_rows": "rsa_max_rows", "sample_seed": "seed"}}
FIXED_K = "svcca_k"


def metric_specs(settings: AnalysisSettings, names: Sequence[str] | None = None
                 ) -> list[MetricSpec]:
    """The configured metrics (or ``names``): any registered metric, and ``svcca_k``, one
    SVCCA per fixed k (``svcca_k20``, ...)."""
    specs = []
    for name in settings.metrics if names is None else names:
        if name == FIXED_K:
            specs += [_spec(f"{FIXED_K}{k}", "svcca", {"k": k}) for k in settings.fixed_k]
        elif name in sim.metrics() and sim.measure(name).name == name:  # not an alias
            specs.append(_spec(name, name, {option: getattr(settings, key) for option, key
                                            in OPTION_SETTINGS.get(name, {}).items()}))
        else:
            raise ValueError(f"unknown metric {name!r}; use {', '.join(reportable())}")
    return specs


def _spec(name: str, base: str, kwargs: dict) -> MetricSpec:
    entry = sim.measure(base)
    return MetricSpec(name, base, kwargs, entry.truncation({**entry.options, **kwargs}))


def reportable() -> list[str]:
    """The names ``analysis.metrics`` accepts, in display order."""
    return sorted([m for m in sim.metrics() if sim.measure(m).name == m] + [FIXED_K],
                  key=display_key)


def base_metric(name: str) -> str:
    """The registered metric a reported one runs (``svcca_k20``: svcca)."""
    k = name.removeprefix(FIXED_K)
    return "svcca" if name != k and (k == "" or k.isdigit()) else name


def display_key(name: str) -> tuple:
    """Sort key of reported metrics: the registry's display order, a fixed-k variant after
    its metric by k; names the registry does not know last, by name."""
    base = base_metric(name)
    if base not in sim.metrics():
        return (float("inf"), 0, name)
    k = name.removeprefix(FIXED_K)
    return (sim.measure(base).order, int(k) if base != name and k.isdigit() else -1, name)


def metric_label(name: str, variance: float | None = None, rule: str | None = None) -> str:
    """A reported metric's label: the registry's, with the variance share and rule of a
    variance-cut SVCCA ("SVCCA (99% of Σs²)") and the k of a fixed-k one ("SVCCA k=20")."""
    base = base_metric(name)
    if base not in sim.metrics():
        return name
    label = sim.measure(base).label
    if base != name:
        return f"{label} k={name.removeprefix(FIXED_K)}"
    if name == "svcca":
        share = f"{float(variance):.0%}" if variance is not None else "?"
        return f"{label} ({share} of {RULE_LABELS.get(rule, '?')})"
    return label


RULE_LABELS = {"s2": "Σs²", "s": "Σs"}  # the variance rules of analysis.variance_rule


@dataclass(frozen=True)
class Unusable:
    """A representation no metric can use (non-finite or constant values), and why."""

    reason: str
    n_tokens: int
    n_dims: int


class Rep:
    """One representation (a layer at a checkpoint, on a token sample): its full-rank basis,
    and each metric's cache of it (neighbour lists, a ranked RDM), built on first use and
    reused for every comparison it takes part in."""

    def __init__(self, basis: sim.Basis, where: str = ""):
        self.basis, self.where = basis, where
        self._prepared: dict[tuple, sim.Prepared] = {}

    @property
    def n_tokens(self) -> int:
        return self.basis.n_tokens

    @property
    def n_dims(self) -> int:
        return self.basis.n_dims

    def prepared(self, spec: MetricSpec) -> sim.Prepared:
        key = (spec.base, tuple(sorted(spec.kwargs.items())))
        if key not in self._prepared:
            self._prepared[key] = sim.prepare(self.basis, spec.base, name=self.where,
                                              **spec.kwargs)
        return self._prepared[key]


def full_basis(x: np.ndarray, where: str = "", device: str = "cpu") -> Rep | Unusable:
    """One representation with its full-rank basis on ``device``, reused by every metric (any
    truncation); an input the library refuses gives an Unusable with the reason and ``where``
    it was."""
    try:
        t = x if device == "cpu" else torch.from_numpy(np.ascontiguousarray(x)).to(device)
        return Rep(sim.basis(t), where)
    except ValueError as err:
        return Unusable(f"{where}: {err}" if where else str(err), len(x), x.shape[1])


def compare(ba: Rep | Unusable, bb: Rep | Unusable, specs: Sequence[MetricSpec],
            shuffles: int, seed: int) -> list[dict]:
    """One row per metric for a pair of bases (value, k_a, k_b, n_tokens, baseline). A
    metric that cannot be computed (an unusable representation, CCA with too few tokens or
    too few distinct rows for its dims, mutual k-NN on rows that repeat differently in a and
    b) gives a row with value NaN and its reason in ``na_reason``; ``n_rows_used``: the rows
    RSA sampled, the distinct rows mutual k-NN ran on."""
    reasons: dict[int, str] = {}
    pairs: dict[int, tuple[sim.Prepared, sim.Prepared]] = {}
    for i, spec in enumerate(specs):
        reason = next((b.reason for b in (ba, bb) if isinstance(b, Unusable)), None)
        if reason is None:
            try:
                pairs[i] = ba.prepared(spec), bb.prepared(spec)
            except ValueError as err:  # e.g. CCA with too few tokens for its dims
                reasons[i] = str(err)
        else:
            reasons[i] = reason
    results = _results(pairs)
    for i, res in list(results.items()):
        if isinstance(res, str) or not np.isfinite(res.value):  # e.g. no variance
            reasons[i] = res if isinstance(res, str) else res.reason or "not finite"
            del results[i]
    nulls = dict(zip(results, sim.permuted_many([pairs[i] for i in results], shuffles, seed),
                     strict=True)) if shuffles > 0 else {}
    rows = []
    for i, spec in enumerate(specs):
        if i in reasons:
            rows.append(dict(metric=spec.name, value=np.nan, k_a=np.nan, k_b=np.nan,
                             n_tokens=ba.n_tokens, variance_rule=spec.variance_rule,
                             baseline=np.nan, baseline_std=np.nan, na_reason=reasons[i]))
            continue
        res, null = results[i], nulls.get(i)
        base_mean = base_std = np.nan
        if null is not None:
            base_mean, base_std = float(null.mean()), float(null.std(ddof=1)) if shuffles > 1 \
                else 0.0
        rows.append(dict(metric=spec.name, value=float(res.value), k_a=int(res.k_a),
                         k_b=int(res.k_b), n_tokens=int(res.n_tokens),
                         variance_rule=spec.variance_rule, baseline=base_mean,
                         baseline_std=base_std, rtol_a=res.rtol_a, rtol_b=res.rtol_b,
                         metric_kind=res.kind, n_rows_used=res.n_rows_used,
                         na_reason=None))
    return rows


def _results(pairs: dict[int, tuple[sim.Prepared, sim.Prepared]]
             ) -> dict[int, sim.SimilarityResult | str]:
    """Each metric's result (sharing the basis product), or the reason it failed: when one
    fails, the others are computed one at a time."""
    try:
        return dict(zip(pairs, sim.compare_many(list(pairs.values())), strict=True))
    except ValueError:
        out: dict[int, sim.SimilarityResult | str] = {}
        for i, (pa, pb) in pairs.items():
            try:
                out[i] = sim.compare_prepared(pa, pb)
            except ValueError as err:
                out[i] = str(err)
        return out
