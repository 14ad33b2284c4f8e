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

Settings = AnalysisSettings  # conf/analysis; every table records the settings it used


@dataclass(frozen=True)
class MetricSpec:
    """One reported metric: the library metric, its truncation keywords and a label."""

    name: str
    base: str
    kwargs: Mapping
    variance_rule: str


def metric_specs(settings: Settings, names: Sequence[str] | None = None) -> list[MetricSpec]:
    """The configured metrics (or ``names``); ``svcca_k`` expands to one metric per fixed k."""
    specs = []
    for name in settings.metrics if names is None else names:
        if name == "svcca":
            kw = {"variance": settings.variance, "rule": settings.variance_rule}
            specs.append(MetricSpec("svcca", "svcca", kw,
                                    f"{settings.variance_rule}:{settings.variance:g}"))
        elif name == "svcca_k":
            specs += [MetricSpec(f"svcca_k{k}", "svcca", {"k": k}, f"k={k}")
                      for k in settings.fixed_k]
        elif name in FULL_RANK:
            specs.append(MetricSpec(name, name, {}, FULL_RANK[name]))
        elif name == "mutual_knn":
            specs.append(MetricSpec(name, name, {"k": settings.knn_k}, f"k={settings.knn_k}"))
        elif name == "rsa":
            rows = settings.rsa_max_rows
            specs.append(MetricSpec(name, name, {"max_rows": rows, "sample_seed": settings.seed},
                                    f"rows<={rows}"))
        else:
            raise ValueError(f"unknown metric {name!r}; use {', '.join(METRICS)}")
    return specs


# metrics on the full-rank bases, with what their row records as the truncation
FULL_RANK = {"pwcca": "rank", "cka": "full", "cka_debiased": "full", "procrustes": "full",
             "procrustes_angular": "full"}
METRICS = ("svcca", "svcca_k", *FULL_RANK, "mutual_knn", "rsa")




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
    metric that cannot be computed (an unusable representation, CCA with too few tokens for
    its dims) gives a row with value NaN and its reason in ``na_reason``."""
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
