"""Learning-dynamics tables: similarity and concentration over training checkpoints.

Pure functions from a representation store (analysis/repstore.py) to tidy pandas tables; no
Hydra, no file writing. Every similarity row says what was compared (model/step/layer on each
side, the token restriction), with which metric (SVCCA at a variance rule or a fixed k, PWCCA,
linear CKA), the dimensions that entered (k_a, k_b), the token count and, where applicable, the
chance level at the same size (shuffled token pairing).

Conventions, so that numbers stay comparable:
- Each (probe, side) gets one seeded token subsample (cap ``max_tokens``), the same rows for
  every model and checkpoint; per-tag subsets draw one common N per (probe, side).
- A representation's basis is computed once (full rank) and reused for every metric and pair.
- The reference ("final") checkpoint is the last one stored for that model and probe.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from analysis import repstore
from analysis import similarity as sim
from analysis.comparisons import (  # noqa: F401  (dynamics.X stays importable)
    FULL_RANK,
    METRICS,
    MetricSpec,
    Rep,
    Settings,
    Unusable,
    compare,
    full_basis,
    metric_specs,
)
from analysis.concentration import aggregate_by_tag, concentration, frequency_matched_difference
from analysis.pools import process_pool
from analysis.runs import (  # noqa: F401
    ModelRun,
    Probe,
    discover_runs,
    load_rows,
    same_tokens,
    side_layers,
    stable_seed,
    subsample,
    tagged_word_and_freq,
    usable_steps,
)
from analysis.settings import flat

log = logging.getLogger(__name__)

SIM_COLUMNS = [
    "analysis", "model", "kind", "seed", "probe", "side", "model_b", "step_a", "step_b",
    "fraction_a", "layer_a", "layer_b", "depth_a", "depth_b", "tag", "tag_family",
    "freq_matched", "metric", "value", "k_a", "k_b", "n_tokens", "n_types", "variance_rule",
    "baseline", "baseline_std",
]
ALL = "all"          # tag value of unrestricted rows
POOLED = "pooled"    # tag value of family rows pooled over tags


def _frame(rows: list[dict], columns: Sequence[str] = SIM_COLUMNS) -> pd.DataFrame:
    """Rows as a table with the given column order (absent columns are NaN)."""
    table = pd.DataFrame(rows)
    for c in columns:
        if c not in table:
            table[c] = np.nan
    extra = [c for c in table.columns if c not in columns]
    return table[list(columns) + extra]


def _base_row(run: ModelRun, probe: str, side: str, **kw) -> dict:
    return dict(model=run.name, kind=run.kind, seed=run.seed, probe=probe, side=side, **kw)


# ---------------------------------------------------------------------------- F1, F2, F4, k


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


def over_training(p: Probe, settings: Settings, taggers: Mapping[str, Probe] | None = None
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
                base = _base_row(p.run, p.name, side, step_a=step, fraction_a=step / final,
                                 layer_a=layer, layer_b=layer, depth_a=depth, depth_b=depth,
                                 tag=ALL, tag_family=ALL, freq_matched=False, n_types=np.nan)
                seed = stable_seed(settings.seed, p.run.name, p.name, layer, step)
                shuffles = settings.baseline_shuffles if step in picked.values() else 0
                for row in compare(b, finals[depth], specs, shuffles, seed):
                    conv.append({**base, "analysis": "convergence", "model_b": p.run.name,
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
                        vs_tagger.append({**base, "analysis": "tagger", "model_b": tagger,
                                          "step_b": t.final, "tag_family": t.run.tags or tagger,
                                          "shared_init": shared,
                                          "layer_b": t_layer,
                                          "depth_b": t.layers[side].index(t_layer), **row})
                s = b.basis.s if isinstance(b, Rep) else None
                kdim.append(_base_row(
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
    return {"convergence": _frame(conv), "tagger": _frame(vs_tagger),
            "layer_matrix": _frame(matrix), "intrinsic_dim": pd.DataFrame(kdim)}


def _delta_null(rows: list[dict], specs: Sequence[MetricSpec], b: Rep | Unusable,
                t: Rep | Unusable, last: bool, nulls: dict, key: tuple, settings: Settings,
                seed: int) -> None:
    """C3's permutation null: the similarity to the tagger with the tokens re-paired, at the
    first and the last checkpoint with the same permutations, so each permutation gives a
    change over training under no token correspondence. On the last checkpoint's rows,
    ``p_increase``/``p_decrease`` are the one-sided p of the observed change."""
    n = settings.claims.n_permutations
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
            rows.append(_base_row(
                p.run, p.name, side, analysis="layer_matrix", model_b=p.run.name,
                step_a=step, step_b=p.final, fraction_a=step / p.final, fraction_target=frac,
                layer_a=layers[i], layer_b=layers[j], depth_a=i, depth_b=j, tag=ALL,
                tag_family=ALL, freq_matched=False, **row))
    return rows


# ---------------------------------------------------------------------------- F5, F3


def common_n(counts: pd.Series, settings: Settings) -> int:
    """One N for every tag of a (probe, side): the count of the ``min_tags``-th largest tag,
    clamped to [min_n, max_n]. Depends on token counts only, never on results."""
    ordered = np.sort(counts.to_numpy())[::-1]
    nth = ordered[settings.per_tag.min_tags - 1] if len(ordered) >= settings.per_tag.min_tags \
        else 0
    return int(np.clip(nth, settings.per_tag.min_n, settings.per_tag.max_n))


def tag_samples(tokens: pd.DataFrame, tag_column: str, n: int, settings: Settings,
                probe: str, side: str, freq_matched: bool = False) -> dict[str, np.ndarray]:
    """Per tag with at least ``n`` tokens: ``n`` seeded row indices (the same for every model
    and step). ``freq_matched``: every tag's sample has the same count in each of
    ``per_tag_freq_bins`` log-frequency bins (quantiles over the eligible tokens); tags that
    cannot fill every bin are left out."""
    tags = tokens[tag_column]
    valid = tags.notna() & ~tags.isin(settings.exclude_tags)
    counts = tags[valid].value_counts()
    eligible = sorted(counts.index[counts >= n])
    out = {}
    if not freq_matched:
        for tag in eligible:
            rows = np.flatnonzero((tags == tag).to_numpy())
            rng = np.random.default_rng(stable_seed(settings.seed, probe, side, tag_column, tag))
            out[tag] = np.sort(rng.choice(rows, size=n, replace=False))
        return out
    _, freq = tagged_word_and_freq(tokens, tag_column)
    logf = np.log1p(freq.to_numpy(dtype=float))
    pool = valid.to_numpy() & tags.isin(eligible).to_numpy() & np.isfinite(logf)
    if not pool.any():
        return out
    n_bins = settings.per_tag.freq_bins
    edges = np.unique(np.quantile(logf[pool], np.linspace(0, 1, n_bins + 1)))
    bins = np.searchsorted(edges[1:-1], logf, side="right")
    n_bins = len(edges) - 1
    quota = n // max(n_bins, 1)
    for tag in eligible:
        in_tag = pool & (tags == tag).to_numpy()
        per_bin = [np.flatnonzero(in_tag & (bins == b)) for b in range(n_bins)]
        if quota < 1 or any(len(r) < quota for r in per_bin):
            continue
        rng = np.random.default_rng(stable_seed(settings.seed, probe, side, tag_column, tag,
                                                "freq"))
        out[tag] = np.sort(np.concatenate([rng.choice(r, size=quota, replace=False)
                                           for r in per_bin]))
    return out


def random_samples(valid: np.ndarray, n: int, settings: Settings, probe: str, side: str
                   ) -> dict[str, np.ndarray]:
    """``per_tag.random_subsets`` seeded subsets of ``n`` rows among the ``valid`` ones, any
    tag ("random_1", ...): the size control of the tag-restricted subsets."""
    rows = np.flatnonzero(valid)
    if len(rows) < n:
        return {}
    out = {}
    for i in range(1, settings.per_tag.random_subsets + 1):
        rng = np.random.default_rng(stable_seed(settings.seed, probe, side, "random", i))
        out[f"random_{i}"] = np.sort(rng.choice(rows, size=n, replace=False))
    return out


def per_tag(p: Probe, settings: Settings) -> pd.DataFrame:
    """Each tag's tokens, subsampled to one common N: every layer at every checkpoint vs the
    same layer at the final checkpoint (F5, POS tags, plus a frequency-matched variant), and
    per topic (genre) subset for the LM's topic family (F3), and random N-token subsets
    (family "random", the size control). Word types per tag in ``n_types``;
    the step-0 value of the same key in ``ref_init``. Metrics: ``per_tag_metrics`` (N is only
    a few times the width, too few tokens for 99%-SVCCA or PWCCA at full rank)."""
    specs = metric_specs(settings, settings.per_tag.metrics)
    dev = settings.device
    rows = []
    final = p.final
    picked = set(fraction_steps(p.steps, settings.fractions).values())  # baselines here
    for side, layers in p.layers.items():
        tokens = p.tokens[side]
        pos_col = settings.tag_columns.get(side, "pos")
        groups = []
        valid = tokens[pos_col].notna() & ~tokens[pos_col].isin(settings.exclude_tags)
        n = common_n(tokens.loc[valid, pos_col].value_counts(), settings)
        for matched in (False, True):
            groups.append(("pos", pos_col, matched,
                           tag_samples(tokens, pos_col, n, settings, p.name, side, matched)))
        for family, column in sorted(p.labels.items()):  # other label sets: topic (genre)
            if family != "pos" and column in tokens:
                groups.append((family, column, False,
                               tag_samples(tokens, column, n, settings, p.name, side)))
        groups.append(("random", pos_col, False,
                       random_samples(valid.to_numpy(), n, settings, p.name, side)))
        for family, column, matched, samples in groups:
            words, _ = tagged_word_and_freq(tokens, column)
            for tag, idx in samples.items():
                n_types = int(words.iloc[idx].nunique())
                n_all = n if family == "random" else int((tokens[column] == tag).sum())
                for depth, layer in enumerate(layers):
                    ref = full_basis(p.array(final, layer, idx), p.where(final, layer, tag),
                                     dev)
                    for step in p.steps:
                        b = ref if step == final else full_basis(
                            p.array(step, layer, idx), p.where(step, layer, tag), dev)
                        base = _base_row(
                            p.run, p.name, side, analysis="per_tag", model_b=p.run.name,
                            step_a=step, step_b=final, fraction_a=step / final,
                            layer_a=layer, layer_b=layer, depth_a=depth, depth_b=depth,
                            tag=tag, tag_family=family, freq_matched=matched,
                            n_types=n_types, tag_tokens=n_all, tag_column=column)
                        seed = stable_seed(settings.seed, p.run.name, p.name, layer, step, tag)
                        shuffles = settings.baseline_shuffles if step in picked else 0
                        for row in compare(b, ref, specs, shuffles, seed):
                            rows.append({**base, **row})
    table = _frame(rows)
    if table.empty:
        return table
    keys = ["model", "probe", "side", "layer_a", "tag", "tag_family", "freq_matched", "metric"]
    init = table[table.step_a == table.groupby(keys).step_a.transform("min")]
    return table.merge(init[keys + ["value"]].rename(columns={"value": "ref_init"}), on=keys,
                       how="left")


def family_pooled(per_tag_table: pd.DataFrame) -> pd.DataFrame:
    """Family-restricted similarity (F3): per family, the per-tag values (not frequency
    matched) pooled as a mean weighted by each tag's token count in the probe."""
    t = per_tag_table[~per_tag_table.freq_matched.astype(bool)] if len(per_tag_table) else \
        per_tag_table
    if t.empty:
        return _frame([])
    keys = ["model", "kind", "seed", "probe", "side", "model_b", "step_a", "step_b",
            "fraction_a", "layer_a", "layer_b", "depth_a", "depth_b", "tag_family", "metric",
            "variance_rule"]

    # one pass over the rows sorted by group (stable: each group's rows in table order)
    # instead of a pandas apply that builds a frame and a Series per group
    gid = t.groupby(keys, dropna=False, sort=True).ngroup().to_numpy()
    order = np.argsort(gid, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(gid[order]) != 0])
    col = {c: t[c].to_numpy()[order] for c in ("value", "tag_tokens", "baseline", "k_a", "k_b",
                                                "n_tokens", "n_types", "na_reason")}
    first = t[keys].iloc[order[starts]].to_dict("records")
    rows = []
    for head, lo, hi in zip(first, starts, np.r_[starts[1:], len(order)], strict=True):
        g = {c: v[lo:hi] for c, v in col.items()}
        value = g["value"].astype(float)
        w = g["tag_tokens"].astype(float)
        counts = dict(n_tokens=float(g["n_tokens"].sum()), n_types=float(g["n_types"].sum()),
                      n_tags=float(hi - lo))  # floats, as the table's other numbers
        missing = np.isnan(value)
        if missing.any():  # a family value needs all its tags: NA, saying which one failed
            reason = next((r for r in g["na_reason"] if isinstance(r, str)), "not computed")
            rows.append(dict(head, value=np.nan, baseline=np.nan, k_a=np.nan, k_b=np.nan,
                             **counts, na_reason=f"{int(missing.sum())} of {hi - lo} "
                             f"tags not computed: {reason}"))
            continue
        baseline = g["baseline"].astype(float)
        rows.append(dict(
            head, value=np.average(value, weights=w),
            baseline=np.average(baseline, weights=w) if not np.isnan(baseline).any()
            else np.nan,
            k_a=float(round(np.average(g["k_a"].astype(float), weights=w))),
            k_b=float(round(np.average(g["k_b"].astype(float), weights=w))), **counts,
            na_reason=np.nan))
    pooled = pd.DataFrame(rows)
    pooled["analysis"] = "family"
    pooled["tag"] = POOLED
    pooled["freq_matched"] = False
    return _frame(pooled.to_dict("records"))


# ---------------------------------------------------------------------------- F6


def _groups(tags: pd.Series, settings: Settings) -> np.ndarray:
    return np.where(tags.isin(settings.function_tags), "function",
                    np.where(tags.isin(settings.content_tags), "content", "other"))


def concentration_tables(p: Probe, settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Concentration c = ‖x‖₂/‖x‖₁ of activations (input-aligned tags) and gradients
    (target-aligned tags) per tag, layer and checkpoint (F6), and the frequency-matched
    function-minus-content difference (Saphra & Lopez 2019, Sparsity).

    Returns (per-tag table with mean/median/CI per tag and an 'all' row, function_content).
    """
    per, fc = [], []
    for side, layers in p.layers.items():
        idx = p.sample(side, settings)
        rows = p.tokens[side].iloc[idx].reset_index(drop=True)
        for kind, columns in (("act", settings.act_tag_columns),
                              ("grad", settings.grad_tag_columns)):
            column = columns.get(side, "pos")
            tags = rows[column].astype(object).where(rows[column].notna(), "none")
            _, freq = tagged_word_and_freq(p.tokens[side], column)
            freq = freq.iloc[idx].to_numpy(dtype=float)
            keep = ~tags.isin(settings.exclude_tags).to_numpy()
            groups = _groups(tags, settings)
            for depth, layer in enumerate(layers):
                for step in p.steps:
                    x = p.array(step, layer, idx, kind)
                    if x is None:
                        continue
                    # non-finite rows are left out, and counted
                    finite = np.isfinite(x).all(axis=1)
                    base = _base_row(p.run, p.name, side, layer=layer, depth=depth, step=step,
                                     fraction=step / p.final, quantity=kind,
                                     tag_column=column, dim=x.shape[1],
                                     n_nonfinite=int((~finite).sum()))
                    if not finite.any():
                        fc.append({**base, "difference": np.nan, "na_reason":
                                   f"{p.where(step, layer)} {kind}: no finite row"})
                        continue
                    c = concentration(x[finite])
                    seed = stable_seed(settings.seed, p.run.name, p.name, layer, step, kind)
                    agg = aggregate_by_tag(c[keep[finite]], tags[finite][keep[finite]].to_numpy(),
                                           n_boot=settings.concentration.tag_n_boot, seed=seed,
                                           ci=settings.concentration.ci)
                    whole = aggregate_by_tag(c, np.full(len(c), ALL),
                                             n_boot=settings.concentration.tag_n_boot, seed=seed,
                                             ci=settings.concentration.ci)
                    for r in pd.concat([agg, whole]).to_dict("records"):
                        per.append({**base, **r})
                    try:
                        fm = frequency_matched_difference(
                            c, np.asarray(groups)[finite], freq[finite],
                            n_bins=settings.concentration.freq_bins,
                            order=("function", "content"), n_boot=settings.concentration.n_boot,
                            seed=seed, ci=settings.concentration.ci,
                            n_perm=settings.claims.n_permutations)
                    except ValueError as err:
                        fc.append({**base, "difference": np.nan, "na_reason": str(err),
                                   "freq_bins": settings.concentration.freq_bins})
                        continue
                    fc.append({**base, "difference": fm.difference, "ci_low": fm.ci_low,
                               "ci_high": fm.ci_high, "n_function": int(fm.bins.n_a.sum()),
                               "n_content": int(fm.bins.n_b.sum()), "n_bins": len(fm.bins),
                               "freq_bins": settings.concentration.freq_bins,
                               "p_value": fm.p_value, "na_reason": None})
    per_t, fc_t = pd.DataFrame(per), pd.DataFrame(fc)
    for t in (per_t, fc_t):
        if not t.empty:
            t.insert(0, "metric", "concentration")
    return per_t, fc_t


# ---------------------------------------------------------------------------- S1


def token_count_sanity(settings: Settings, p: Probe | None = None) -> pd.DataFrame:
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


# ---------------------------------------------------------------------------- S4

# metrics whose definition makes them invariant to an orthogonal map with isotropic scaling
ROTATION_INVARIANT = ("svcca", "cca", "cka", "cka_debiased", "procrustes",
                      "procrustes_angular", "mutual_knn")


def sensitivity(p: Probe, settings: Settings) -> pd.DataFrame:
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
            base = _base_row(p.run, p.name, side, analysis="sensitivity", layer=layer,
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


def sensitivity_verdicts(table: pd.DataFrame, settings: Settings,
                         seeds: pd.DataFrame | None = None,
                         convergence: pd.DataFrame | None = None) -> pd.DataFrame:
    """PASS/FAIL per metric and S4 test: monotone decrease with the components removed (every
    layer), unchanged under rotation and scaling (where the metric claims invariance), and,
    with several seeds, final-vs-final across seeds above initial-vs-final (every layer)."""
    out = []
    tol = settings.sensitivity.tolerance
    if len(table):
        for metric, g in table[table.test == "pcs_removed"].groupby("metric"):
            ok = [_falls(lg.sort_values("j").value.to_numpy(), tol)
                  for _, lg in g.groupby(["model", "probe", "side", "layer"])]
            out.append(dict(test="pcs_removed", metric=metric, layers=len(ok),
                            passing=int(sum(ok)), verdict="PASS" if all(ok) else "FAIL"))
        for metric, g in table[table.test == "rotation_scaling"].groupby("metric"):
            expected = ("svcca" if metric.startswith("svcca") else metric) in ROTATION_INVARIANT
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
            ok = g.seed_vs_seed > g.init_vs_final
            out.append(dict(test="seeds_above_init", metric=metric, layers=len(g),
                            passing=int(ok.sum()), verdict="PASS" if ok.all() else "FAIL"))
    return pd.DataFrame(out, columns=["test", "metric", "layers", "passing", "verdict"])


# ---------------------------------------------------------------------------- S2


def seed_to_seed(probes: Sequence[Probe], settings: Settings) -> pd.DataFrame:
    """S2: each layer of a model's final checkpoint vs the same layer of the same model
    trained with another seed, on the same tokens (the lowest seed's subsample), under every
    metric with its shuffled baseline; step 0 (two random initialisations) as the reference."""
    specs = metric_specs(settings)
    dev = settings.device
    groups: dict[tuple[str, str], list[Probe]] = {}
    for p in probes:
        groups.setdefault((p.run.name, p.name), []).append(p)
    rows = []
    for (model, probe), group in sorted(groups.items()):
        group = sorted(group, key=lambda p: p.run.seed)
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                for side, layers in a.layers.items():
                    if not same_tokens(a.tokens[side], b.tokens.get(side, pd.DataFrame())):
                        log.warning("%s/%s: seeds %d and %d have other %s tokens; skipped",
                                    model, probe, a.run.seed, b.run.seed, side)
                        continue
                    idx = a.sample(side, settings)
                    points = [("final", a.final, b.final)]
                    if len(a.steps) > 1 and len(b.steps) > 1:
                        points.insert(0, ("init", a.steps[0], b.steps[0]))
                    for depth, layer in enumerate(layers):
                        for point, step_a, step_b in points:
                            ba = full_basis(a.array(step_a, layer, idx), device=dev)
                            bb = full_basis(b.array(step_b, layer, idx), device=dev)
                            seed = stable_seed(settings.seed, model, probe, layer, point)
                            for row in compare(ba, bb, specs, settings.baseline_shuffles, seed):
                                rows.append(dict(model=model, kind=a.run.kind, probe=probe,
                                                 side=side, layer=layer, depth=depth,
                                                 seed_a=a.run.seed, seed_b=b.run.seed,
                                                 checkpoint=point, step_a=step_a,
                                                 step_b=step_b, **row))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- everything


def checkpoint_table(runs: Sequence[ModelRun]) -> pd.DataFrame:
    """Steps of every model with epoch, tokens seen, losses and the fraction of training."""
    parts = []
    for run in runs:
        t = run.checkpoints.copy()
        t.insert(0, "model", run.name)
        t.insert(1, "kind", run.kind)
        t.insert(2, "seed", run.seed)
        t["fraction"] = t.step / t.step.max()
        parts.append(t.drop(columns=[c for c in ("sha256", "file", "bytes") if c in t]))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def settings_table(settings: Settings) -> pd.DataFrame:
    """The settings as dotted keys with JSON values (for the report and the figures)."""
    return pd.DataFrame(sorted(flat(settings).items()), columns=["key", "value"])


def sizes_table(probes: Sequence[Probe], settings: Settings) -> pd.DataFrame:
    """Data sizes per model, probe and layer: dims, tokens stored and used, checkpoints."""
    rows = []
    for p in probes:
        info = repstore.layers(p.root)
        for side, layers in p.layers.items():
            for layer in layers:
                rows.append(dict(model=p.run.name, kind=p.run.kind, seed=p.run.seed,
                                 probe=p.name, side=side, layer=layer, dim=info[layer]["dim"],
                                 n_tokens=len(p.tokens[side]),
                                 n_used=len(p.sample(side, settings)), n_steps=len(p.steps),
                                 final_step=p.final))
    return pd.DataFrame(rows)


def analyze_store(p: Probe, settings: Settings, fams: Mapping[str, Probe]
                  ) -> dict[str, pd.DataFrame]:
    """Every over-training table of one (model, probe) store; ``fams`` maps each reference
    model (tagger) to its store on the same probe."""
    tables = over_training(p, settings, fams)
    tables["per_tag"] = per_tag(p, settings)
    tables["family"] = family_pooled(tables["per_tag"])
    tables["sensitivity"] = sensitivity(p, settings)
    tables["concentration"], tables["function_content"] = concentration_tables(p, settings)
    log.info("analyzed %s/%s (%d checkpoints)", p.run.name, p.name, len(p.steps))
    return tables


def analyze(runs: Sequence[ModelRun], settings: Settings, progress: bool = True,
            workers: int = 1) -> dict[str, pd.DataFrame]:
    """Every table of the learning-dynamics analysis for the given models.

    Every model that is not a reference gets the analyses over training (convergence, layer
    matrices, per-tag, concentration), and is compared with every reference (tagger) extracted
    on the same probe tokens. Stores are independent: ``workers`` processes analyse them side
    by side.
    """
    opened: dict[tuple[str, str], Probe] = {}
    for run in runs:
        for probe in run.stores:
            p = Probe.open(run, probe)
            if not p.steps:
                log.warning("%s/%s: no complete checkpoint stored; skipped", run.name, probe)
                continue
            opened[(run.name, probe)] = p
    taggers = [r for r in runs if r.reference]
    todo = [p for p in opened.values() if not p.run.reference]
    fams = [{t.name: opened[(t.name, p.name)] for t in taggers if (t.name, p.name) in opened}
            for p in todo]
    jobs = (todo, [settings] * len(todo), fams)
    bar = {"total": len(todo), "desc": "analyze", "unit": "store", "disable": not progress}
    if workers > 1 and len(todo) > 1:
        with process_pool(min(workers, len(todo)), "spawn") as pool:
            results = list(tqdm(pool.map(analyze_store, *jobs), **bar))
    else:
        results = list(tqdm(map(analyze_store, *jobs), **bar))
    out: dict[str, list[pd.DataFrame]] = {}
    for result in results:
        for name, table in result.items():
            out.setdefault(name, []).append(table)
    tables = {name: _concat(parts) for name, parts in out.items()}
    tables["sanity_tokens"] = token_count_sanity(settings, _sanity_probe(opened, settings))
    tables["checkpoints"] = checkpoint_table(runs)
    tables["sizes"] = sizes_table(list(opened.values()), settings)
    for t in tables.values():  # the model seed is `seed`; this one chose tokens and shuffles
        t["analysis_seed"] = settings.seed
    tables["settings"] = settings_table(settings)
    return tables


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [t for t in parts if not t.empty]
    return pd.concat(parts, ignore_index=True) if parts else _frame([])


def _sanity_probe(opened: Mapping[tuple[str, str], Probe], settings: Settings) -> Probe | None:
    """The store S1's init-vs-final curve uses: the configured model (else the first model
    over training that reads a word stream)."""
    for (name, _), p in opened.items():
        if name == settings.sanity.model or (settings.sanity.model is None and not
                                             p.run.reference and "lm" in p.layers):
            return p
    return None


__all__ = [
    "ALL", "POOLED", "SIM_COLUMNS", "MetricSpec", "ModelRun", "Probe", "Settings", "analyze",
    "analyze_store",
    "checkpoint_table", "common_n", "compare", "concentration_tables", "discover_runs",
    "family_pooled", "fraction_steps", "metric_specs", "over_training", "per_tag",
    "seed_to_seed", "sizes_table", "stable_seed", "subsample", "tag_samples",
    "tagged_word_and_freq", "token_count_sanity", "usable_steps",
]


def reference_late_cka(runs: Sequence[ModelRun], settings: Settings) -> pd.DataFrame:
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
