"""The whole-sample tables over training (F1, F2, F4, k): each layer at each checkpoint vs its
final state, vs the final taggers on the same tokens, layer x layer at fractions of training,
and the directions holding the variance share; each basis computed once per checkpoint."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from analysis import similarity as sim
from analysis.comparisons import MetricSpec, Rep, Unusable, compare, full_basis, metric_specs
from analysis.runs import ModelRun, Probe, same_tokens, stable_seed
from analysis.settings import AnalysisSettings
from analysis.tables.registry import CONVERGENCE, INTRINSIC_DIM, LAYER_MATRIX, TAGGER
from analysis.tables.rows import ALL, base_row, frame

log = logging.getLogger(__name__)


def tagger_layer(layer: str, depth: int, tagger_layers: Sequence[str]) -> str:
    """The reference (tagger) layer a model layer is compared with: the same layer where the
    tagger has it, else its embedding for an embedding (depth 0) and its top layer for any
    contextual layer (a deeper LM, or another architecture on the same tokens)."""
    if layer in tagger_layers:
        return layer
    return tagger_layers[0] if depth == 0 else tagger_layers[-1]


def fraction_steps(steps: Sequence[int], fractions: Iterable[float]) -> dict[float, int]:
    """The stored checkpoint nearest to each fraction of the final step."""
    final = steps[-1]
    arr = np.asarray(steps, dtype=float)
    return {f: int(steps[int(np.argmin(np.abs(arr - f * final)))]) for f in fractions}


def over_training(p: Probe, settings: AnalysisSettings, taggers: Mapping[str, Probe] | None = None
                  ) -> dict[str, pd.DataFrame]:
    """The whole-sample analyses of one store, each basis computed once per checkpoint:

    - ``convergence`` (F2): each layer at each checkpoint vs the same layer at the final one;
    - ``tagger`` (F4): vs the same layer of each final tagger on the same tokens (``taggers``
      maps a tag family to the tagger's opened store on this probe);
    - ``layer_matrix`` (F1, Raghu et al. Fig. 4): every layer at the checkpoints nearest to
      ``fractions`` of training vs every layer of the same side at the final checkpoint
      (``fraction_target`` is the requested fraction; no baseline);
    - ``intrinsic_dim``: k holding ``variance`` of the variance per layer and checkpoint.

    Shuffled baselines are computed at the F1 checkpoints only (they change slowly with k).
    """
    dev = settings.device
    specs = metric_specs(settings)
    matrix_specs = metric_specs(settings, settings.matrix_metrics)
    conv, vs_tagger, matrix, kdim = [], [], [], []
    nulls: dict = {}  # shuffled-pairing similarities at the first checkpoint (C3's null)
    final = p.final
    picked = fraction_steps(p.steps, settings.fractions)
    for side, layers in p.layers.items():
        idx = p.sample(side, settings)
        finals = [full_basis(p.array(final, layer, idx), p.where(final, layer), dev)
                  for layer in layers]
        tagger_bases = {}
        for tagger, t in (taggers or {}).items():
            if side not in t.tokens:  # the tagger reads other sides (NMT vs word streams)
                continue
            if not same_tokens(p.tokens[side], t.tokens[side]):
                log.warning("%s/%s: tagger %s has other tokens; not compared", p.run.name,
                            p.name, tagger)
                continue
            t_layers = t.layers.get(side, [])
            pairs = {layer: tagger_layer(layer, depth, t_layers)
                     for depth, layer in enumerate(layers)}
            cache = {tl: full_basis(t.array(t.final, tl, idx), t.where(t.final, tl), dev)
                     for tl in set(pairs.values())}
            tagger_bases[tagger] = (t, {layer: (tl, cache[tl]) for layer, tl in pairs.items()})
        for step in p.steps:
            bases = finals if step == final else [
                full_basis(p.array(step, layer, idx), p.where(step, layer), dev)
                for layer in layers]
            for depth, (layer, b) in enumerate(zip(layers, bases, strict=True)):
                base = base_row(p.run, p.name, side, step_a=step, fraction_a=step / final,
                                 layer_a=layer, layer_b=layer, depth_a=depth, depth_b=depth,
                                 tag=ALL, tag_family=ALL, freq_matched=False, n_types=np.nan)
                seed = stable_seed(settings.seed, p.run.name, p.name, layer, step)
                shuffles = settings.baseline_shuffles if step in picked.values() else 0
                for row in compare(b, finals[depth], specs, shuffles, seed):
                    conv.append({**base, "analysis": CONVERGENCE, "model_b": p.run.name,
                                 "step_b": final, **row})
                for tagger, (t, tb) in tagger_bases.items():
                    t_layer, t_basis = tb[layer]
                    shared = t.run.seed_offset == p.run.seed_offset and t.run.family == p.run.family
                    rows = compare(b, t_basis, specs, shuffles, seed)
                    if step in (p.steps[0], final):
                        _delta_null(rows, specs, b, t_basis, step == final, nulls,
                                    (layer, tagger), settings, stable_seed(
                                        settings.seed, p.run.name, p.name, layer, tagger))
                    for row in rows:
                        vs_tagger.append({**base, "analysis": TAGGER, "model_b": tagger,
                                          "step_b": t.final, "tag_family": t.run.tags or tagger,
                                          "shared_init": shared,
                                          "layer_b": t_layer,
                                          "depth_b": t.layers[side].index(t_layer), **row})
                s = b.basis.s if isinstance(b, Rep) else None
                kdim.append(base_row(
                    p.run, p.name, side, layer=layer, depth=depth, step=step,
                    fraction=step / final, dim=b.n_dims, n_tokens=b.n_tokens,
                    rank=b.basis.rank if s is not None else np.nan,
                    k=sim.n_keep(s, settings.variance, settings.variance_rule)
                    if s is not None else np.nan,
                    k_s2=sim.n_keep(s, settings.variance, "s2") if s is not None else np.nan,
                    k_s=sim.n_keep(s, settings.variance, "s") if s is not None else np.nan,
                    variance=settings.variance, variance_rule=settings.variance_rule))
            for frac in [f for f, st in picked.items() if st == step]:
                matrix += _matrix_rows(p, side, layers, bases, finals, step, frac,
                                       matrix_specs)
    return {CONVERGENCE: frame(conv), TAGGER: frame(vs_tagger), LAYER_MATRIX: frame(matrix),
            INTRINSIC_DIM: pd.DataFrame(kdim)}


def _delta_null(rows: list[dict], specs: Sequence[MetricSpec], b: Rep | Unusable,
                t: Rep | Unusable, last: bool, nulls: dict, key: tuple, settings: AnalysisSettings,
                seed: int) -> None:
    """C3's permutation null: the similarity to the tagger with the tokens re-paired, at the
    first and the last checkpoint with the same permutations, so each permutation gives a
    change over training under no token correspondence. On the last checkpoint's rows,
    ``p_increase``/``p_decrease`` are the one-sided p of the observed change."""
    n = settings.claims.c3.permutations
    if not n or not (isinstance(b, Rep) and isinstance(t, Rep)):
        return
    live = [(spec, row) for spec, row in zip(specs, rows, strict=True)
            if row["na_reason"] is None]
    computed = sim.permuted_many([(b.prepared(spec), t.prepared(spec)) for spec, _ in live],
                                 n, seed)
    for (spec, row), null in zip(live, computed, strict=True):
        if not last:
            nulls[(*key, spec.name)] = (row["value"], null)
            continue
        if (*key, spec.name) not in nulls:
            continue
        first_value, first_null = nulls[(*key, spec.name)]
        delta, delta_null = row["value"] - first_value, null - first_null
        row["p_increase"] = float((1 + np.sum(delta_null >= delta)) / (n + 1))
        row["p_decrease"] = float((1 + np.sum(delta_null <= delta)) / (n + 1))


def _matrix_rows(p: Probe, side: str, layers: list[str], bases: list[Rep | Unusable],
                 finals: list[Rep | Unusable], step: int, frac: float,
                 specs: Sequence[MetricSpec]) -> list[dict]:
    """Rows of one F1 pane: every layer at ``step`` vs every final layer, per metric."""
    rows = []
    for (i, ba), (j, bb) in itertools.product(enumerate(bases), enumerate(finals)):
        for row in compare(ba, bb, specs, 0, 0):
            rows.append(base_row(
                p.run, p.name, side, analysis=LAYER_MATRIX, model_b=p.run.name,
                step_a=step, step_b=p.final, fraction_a=step / p.final, fraction_target=frac,
                layer_a=layers[i], layer_b=layers[j], depth_a=i, depth_b=j, tag=ALL,
                tag_family=ALL, freq_matched=False, **row))
    return rows


def reference_late_cka(runs: Sequence[ModelRun], settings: AnalysisSettings) -> pd.DataFrame:
    """Each reference model's (tagger's) CKA between its two stored checkpoints (the late and
    the last: extract.reference_checkpoints=endpoint), per probe and layer, on the probes'
    token subsample; rows like the convergence table's, for the endpoint test. Empty where
    only the last is stored."""
    rows = []
    for run in (r for r in runs if r.reference):
        for probe in run.stores:
            p = Probe.open(run, probe)
            if len(p.steps) < 2:
                continue
            for side, layers in p.layers.items():
                idx = p.sample(side, settings)
                for layer in layers:
                    late, final = (p.array(s, layer, idx).astype(np.float64)
                                   for s in (p.steps[-2], p.final))
                    rows.append(dict(model=run.name, probe=probe, layer_a=layer,
                                     step_a=p.steps[-2], step_b=p.final, metric="cka",
                                     value=sim.linear_cka(late, final).value))
    return pd.DataFrame(rows, columns=["model", "probe", "layer_a", "step_a", "step_b",
                                       "metric", "value"])
