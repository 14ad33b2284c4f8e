"""The sanity tables: S1 similarity against token count, S2 seed against seed, S4 the metrics'
sensitivity (principal components removed) and specificity (a rotation with scaling)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis import similarity as sim
from analysis.comparisons import Rep, base_metric, compare, full_basis, metric_specs
from analysis.runs import Probe, same_tokens, stable_seed
from analysis.settings import AnalysisSettings
from analysis.tables.registry import SENSITIVITY
from analysis.tables.rows import base_row

log = logging.getLogger(__name__)
DIAGNOSTIC = "diagnostic (not a gate)"


def token_count_sanity(settings: AnalysisSettings, p: Probe | None = None) -> pd.DataFrame:
    """Similarity against token count (S1): two independent Gaussian representations of
    ``sanity_dims`` units (true similarity 0), and, with ``p``, each layer at step 0 vs the
    final step on nested seeded subsamples of the probe."""
    specs = metric_specs(settings)
    dev = settings.device
    rows = []
    rng = np.random.default_rng(stable_seed(settings.seed, "gaussian"))
    d = settings.sanity.dims
    for n in settings.sanity.token_counts:
        x, y = rng.standard_normal((n, d)), rng.standard_normal((n, d))
        for row in compare(full_basis(x, "", dev), full_basis(y, "", dev), specs, 0, 0):
            rows.append(dict(source="gaussian", model="", seed=settings.seed, probe="",
                             layer="", dim=d, **row))
    if p is not None and len(p.steps) > 1:
        for side, layers in p.layers.items():
            n_side = len(p.tokens[side])
            perm = np.random.default_rng(stable_seed(settings.seed, p.name, side, "sanity")
                                         ).permutation(n_side)
            every = np.arange(n_side)
            for layer in layers:
                first = p.array(p.steps[0], layer, every)
                last = p.array(p.final, layer, every)
                for n in settings.sanity.token_counts:
                    if n > n_side:
                        continue
                    take = np.sort(perm[:n])  # nested: each N contains the smaller ones
                    ba, bb = full_basis(first[take], "", dev), full_basis(last[take], "", dev)
                    for row in compare(ba, bb, specs, settings.baseline_shuffles,
                                       stable_seed(settings.seed, layer, n)):
                        rows.append(dict(source="init_vs_final", model=p.run.name,
                                         seed=p.run.seed, probe=p.name, layer=layer,
                                         dim=ba.n_dims, **row))
    return pd.DataFrame(rows)



def sensitivity(p: Probe, settings: AnalysisSettings) -> pd.DataFrame:
    """S4 on every final layer of a store: the metric between the layer and itself with its
    top-j principal components removed (``pcs``; must fall monotonically in j), and between
    the layer and a random rotation of it scaled by ``scale`` (the metrics that claim the
    invariance must stay at their self-similarity within ``tolerance``)."""
    cfg, specs, rows = settings.sensitivity, metric_specs(settings), []
    dev = settings.device
    for side, layers in p.layers.items():
        idx = p.sample(side, settings)
        for depth, layer in enumerate(layers):
            x = p.array(p.final, layer, idx).astype(np.float64)
            ref = full_basis(x, p.where(p.final, layer), device=dev)
            if not isinstance(ref, Rep):
                continue
            xc = x - x.mean(0)
            u, s, vt = np.linalg.svd(xc, full_matrices=False)
            base = base_row(p.run, p.name, side, analysis=SENSITIVITY, layer=layer,
                             depth=depth, step=p.final, dim=x.shape[1])
            for j in [j for j in cfg.pcs if j < ref.basis.rank]:
                removed = xc - (u[:, :j] * s[:j]) @ vt[:j]
                for row in compare(ref, full_basis(removed, device=dev), specs, 0, 0):
                    rows.append({**base, "test": "pcs_removed", "j": j, **row})
            rng = np.random.default_rng(stable_seed(settings.seed, p.run.name, layer, "S4"))
            q, _ = np.linalg.qr(rng.standard_normal((x.shape[1], x.shape[1])))
            moved = full_basis(cfg.scale * x @ q, device=dev)
            same = {r["metric"]: r["value"] for r in compare(ref, ref, specs, 0, 0)}
            for row in compare(ref, moved, specs, 0, 0):
                rows.append({**base, "test": "rotation_scaling", "j": 0, **row,
                             "reference": same.get(row["metric"], np.nan)})
    return pd.DataFrame(rows)


def _falls(values: np.ndarray, tol: float) -> bool:
    """Lowered monotonically: never rises by more than ``tol`` and ends more than ``tol`` below
    where it started (a metric that stays at 1, as CCA does when one side loses directions
    the other still spans, is not sensitive to them)."""
    return bool(np.all(np.diff(values) <= tol) and values[-1] < values[0] - tol)


def sensitivity_verdicts(table: pd.DataFrame, settings: AnalysisSettings,
                         seeds: pd.DataFrame | None = None,
                         convergence: pd.DataFrame | None = None) -> pd.DataFrame:
    """PASS/FAIL per metric and S4 test: monotone decrease with the components removed (every
    layer), unchanged under rotation and scaling (where the metric claims invariance); with
    several seeds, the own-init retention diagnostic: the layers whose final-vs-final
    similarity across seeds exceeds their initial-vs-final (``passing``), not a verdict."""
    out = []
    tol = settings.sensitivity.tolerance
    if len(table):
        for metric, g in table[table.test == "pcs_removed"].groupby("metric"):
            ok = [_falls(lg.sort_values("j").value.to_numpy(), tol)
                  for _, lg in g.groupby(["model", "probe", "side", "layer"])]
            out.append(dict(test="pcs_removed", metric=metric, layers=len(ok),
                            passing=int(sum(ok)), verdict="PASS" if all(ok) else "FAIL"))
        for metric, g in table[table.test == "rotation_scaling"].groupby("metric"):
            expected = sim.SHAPE <= sim.measure(base_metric(metric)).invariant
            ok = (g.value - g.reference).abs() <= tol
            out.append(dict(test="rotation_scaling", metric=metric, layers=len(g),
                            passing=int(ok.sum()),
                            verdict=("PASS" if ok.all() else "FAIL") if expected
                            else "not invariant by definition"))
    if seeds is not None and len(seeds) and convergence is not None and len(convergence):
        init = convergence[convergence.step_a == convergence.groupby(
            ["model", "probe", "layer_a"]).step_a.transform("min")]
        init = init.groupby(["model", "probe", "layer_a", "metric"]).value.mean()
        final = seeds[seeds.checkpoint == "final"].groupby(
            ["model", "probe", "layer", "metric"]).value.mean()
        final.index = final.index.set_names(init.index.names)
        both = pd.concat([final.rename("seed_vs_seed"), init.rename("init_vs_final")],
                         axis=1).dropna()
        for metric, g in both.groupby(level="metric"):
            # specificity (Ding et al. 2021): how much of its own initialisation a layer keeps
            # next to what two seeds share; not a gate (CCA metrics retain init by design)
            ok = g.seed_vs_seed > g.init_vs_final
            out.append(dict(test="own_init_retention", metric=metric, layers=len(g),
                            passing=int(ok.sum()), verdict=DIAGNOSTIC))
    return pd.DataFrame(out, columns=["test", "metric", "layers", "passing", "verdict"])


def seed_to_seed(probes: Sequence[Probe], settings: AnalysisSettings) -> pd.DataFrame:
    """S2: each layer of a model's final checkpoint vs the same layer of the same model
    trained with another seed, on the same tokens (the lowest seed's subsample), under every
    metric with its shuffled baseline; step 0 (two random initialisations) as the reference."""
    groups: dict[tuple[str, str], list[Probe]] = {}
    for p in probes:
        groups.setdefault((p.run.name, p.name), []).append(p)
    rows = []
    for (model, _), group in sorted(groups.items()):
        group = sorted(group, key=lambda p: p.run.seed)
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                points = [("final", a.final, b.final)]
                if a.steps[0] == 0 and b.steps[0] == 0 and a.final and b.final:
                    # the initial models (a reference keeps only its late checkpoints)
                    points.insert(0, ("init", a.steps[0], b.steps[0]))
                rows += [dict(r, seed_a=a.run.seed, seed_b=b.run.seed)
                         for r in layer_pairs(a, b, points, settings, model)]
    return pd.DataFrame(rows)


def layer_pairs(a: Probe, b: Probe, points: Sequence[tuple[str, int, int]],
                settings: AnalysisSettings, model: str) -> list[dict]:
    """Each layer of ``a`` vs the same layer of ``b`` (two models of one architecture, on the
    same tokens: ``a``'s subsample) at each (checkpoint label, step of a, step of b), under
    every metric with its shuffled baseline; a side whose tokens differ is skipped, said."""
    specs = metric_specs(settings)
    rows = []
    for side, layers in a.layers.items():
        if not same_tokens(a.tokens[side], b.tokens.get(side, pd.DataFrame())):
            log.warning("%s/%s: %s and %s have other %s tokens; skipped", model, a.name,
                        a.run.name, b.run.name, side)
            continue
        idx = a.sample(side, settings)
        for depth, layer in enumerate(layers):
            for point, step_a, step_b in points:
                ba = full_basis(a.array(step_a, layer, idx), device=settings.device)
                bb = full_basis(b.array(step_b, layer, idx), device=settings.device)
                seed = stable_seed(settings.seed, model, a.name, layer, point)
                for row in compare(ba, bb, specs, settings.baseline_shuffles, seed):
                    rows.append(dict(model=model, kind=a.run.kind, probe=a.name, side=side,
                                     layer=layer, depth=depth, checkpoint=point,
                                     step_a=step_a, step_b=step_b, **row))
    return rows
