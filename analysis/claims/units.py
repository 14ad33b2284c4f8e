"""The claims' unit statistics: each claim evaluated per unit (model, probe, stack, layer or
tagger) and seed, separately under every similarity metric, as one row each (rows.row). A unit
that cannot be evaluated is NA with the reason. Every statistic is signed so that it is positive
when the claim holds; a unit passes when it reaches the claim's smallest effect of interest
(``claims.primary``). These rows are the detail: the verdicts test their means over each seed's
units across seeds (analysis.claims.seeds).

Curves of similarity over training are read as progress (``progress``): the share of a curve's
total change made by each step, so that a layer that keeps much of its initialisation, or a
metric with a high floor, does not "converge" early by construction.

- C1 lower layers converge first: Spearman ρ between depth and the step from which progress
  stays >= ``convergence_threshold`` (LM, NMT encoder).
- C2 POS-restricted similarity converges before topic-restricted similarity (the same rule, on
  each family's pooled curve); "C2 size" against random subsets of the same N; C2b, the tagger
  reading: similarity to the POS tagger converges before similarity to the topic tagger. The
  statistic is the step difference as a share of training.
- C3 over training the recurrent layers grow more similar to the final taggers and the
  embedding less (change from the first to the last checkpoint); its halves on their own, "C3
  rec" and "C3 emb"; each under own and shared initialisation (" (shared init)").
- C4 function-word gradients are more concentrated than content-word gradients within
  word-frequency bins (final checkpoint), relative to the content words' concentration; also
  per architecture ("C4 <model kind>").
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from analysis.claims.rows import FAIL, NA, PASS, SHARED, fmt, hash_seed, row
from analysis.progress import converged_step
from analysis.settings import Claims
from analysis.tables.concentration import METRIC as CONCENTRATION_METRIC
from analysis.tables.rows import ALL, POOLED


def min_effect(cs: Claims, claim: str) -> float:
    """The smallest effect of interest of a claim (its primary reading's, for every reading)."""
    return cs.primary[claim].min_effect


def spearman_p(depth: Sequence, steps: Sequence, rho: float) -> float:
    """Exact one-sided p of a Spearman ρ(depth, step) this large: over every ordering of the
    layers' depths (so with 2 layers it is at least 1/2: two layers cannot establish an
    order); NaN without an observed ρ."""
    if not np.isfinite(rho):
        return float("nan")
    null = [spearmanr(perm, steps).statistic for perm in itertools.permutations(depth)]
    null = np.nan_to_num(np.asarray(null, dtype=float), nan=0.0)
    return float(np.mean(null >= rho - 1e-12))


def claim_c1(convergence: pd.DataFrame, cs: Claims) -> list[dict]:
    """C1 per (model, probe, stack) and metric: ρ(depth, converged step); layers converging
    at one step give ρ = 0 (no ordering)."""
    rows = []
    threshold = min_effect(cs, "C1")
    t = convergence[convergence.side.isin(cs.c1.sides) & (convergence.tag == ALL)]
    for key, g in t.groupby(["model", "seed", "probe", "side", "metric"], sort=True):
        r = dict(zip(["model", "seed", "probe", "side", "metric"], key, strict=True))
        layers = g.groupby(["depth_a", "layer_a"], sort=True)
        if layers.ngroups < cs.c1.min_layers:
            continue
        depth, steps, names = [], [], []
        for (d, name), lg in layers:
            depth.append(d)
            names.append(name)
            steps.append(converged_step(lg.step_a, lg.value, cs.convergence_threshold))
        detail = ", ".join(f"{n}@{fmt(s)}" for n, s in zip(names, steps, strict=True))
        if not np.isfinite(steps).all():
            rows.append(row("C1", r, f"stack={r['side']}", r["metric"], "spearman_rho",
                            np.nan, threshold, NA, detail + " (a curve with NaN ends)"))
            continue
        rho = float(spearmanr(depth, steps).statistic) if len(set(steps)) > 1 else 0.0
        if len(set(steps)) == 1:
            detail += " (all layers converge at the same step: ρ = 0, no ordering)"
        rows.append(row("C1", r, f"stack={r['side']}", r["metric"], "spearman_rho", rho,
                        threshold, PASS if rho >= threshold else FAIL, detail, n=len(depth),
                        p=spearman_p(depth, steps, rho)))
    return rows


def _tag_step_sums(per_tag: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """Each tag's token-weighted value, tokens and row count at each step, as (tags, steps)
    arrays (NaN counts as 0, as in a pandas sum): a family's pooled curve is a sum of rows."""
    tags, ti = np.unique(per_tag.tag.to_numpy(), return_inverse=True)
    steps, si = np.unique(per_tag.step_a.to_numpy(dtype=float), return_inverse=True)
    tokens = per_tag.tag_tokens.to_numpy(dtype=float)
    weighted = per_tag.value.to_numpy(dtype=float) * tokens
    sums = np.zeros((3, len(tags), len(steps)))
    for total, x in zip(sums, (np.nan_to_num(weighted), np.nan_to_num(tokens), 1.0),
                        strict=True):
        np.add.at(total, (ti, si), x)
    return tags, steps, *sums


def _family_gap(sums: tuple[np.ndarray, ...], is_pos: np.ndarray, cs: Claims) -> float:
    """step(the others) - step(tags labelled POS) as a share of the last step, of their
    token-weighted pooled curves (``sums`` from :func:`_tag_step_sums`, ``is_pos`` a mask
    over its tags)."""
    _, steps, weighted, tokens, rows = sums
    out = []
    for fam in (is_pos, ~is_pos):
        have = rows[fam].sum(axis=0) > 0  # the steps at which the family has a row
        with np.errstate(divide="ignore", invalid="ignore"):
            pooled = weighted[fam].sum(axis=0)[have] / tokens[fam].sum(axis=0)[have]
        out.append(converged_step(steps[have], pooled, cs.convergence_threshold))
    return (out[1] - out[0]) / steps.max()


def family_p(per_tag: pd.DataFrame, observed: float, cs: Claims, seed: int) -> float:
    """One-sided permutation p of POS converging this much earlier than the other family:
    the tags of both families are randomly reassigned to two groups of the families' sizes
    and the pooled curves' converged steps compared again (``n_permutations`` times)."""
    if not np.isfinite(observed) or cs.n_permutations < 1:
        return float("nan")
    tags = per_tag.drop_duplicates("tag").set_index("tag").tag_family
    n_pos = int((tags == "pos").sum())
    sums = _tag_step_sums(per_tag)
    rng = np.random.default_rng(seed)
    null = np.array([_family_gap(sums, np.isin(sums[0], rng.permutation(tags.index.to_numpy())
                                               [:n_pos]), cs)
                     for _ in range(cs.n_permutations)])
    null = np.nan_to_num(null, nan=-np.inf)
    return float((1 + np.sum(null >= observed - 1e-12)) / (len(null) + 1))


def claim_c2(family: pd.DataFrame, cs: Claims, metrics: Sequence[str] = (),
             per_tag: pd.DataFrame | None = None, other: str = "topic") -> list[dict]:
    """C2 per (model, probe, layer) and metric: (topic converged step - POS converged step) /
    last step, on the probes that carry topic labels; its p-value permutes tags between the
    families. ``other="random"``: "C2 size", POS against random subsets of the same N tokens.

    ``metrics`` lists every metric of the analysis, so those never computed on tag subsets
    show up as NA instead of silently missing."""
    rows = []
    claim = "C2" if other == "topic" else "C2 size"
    statistic = f"(step_{other} - step_pos) / steps"
    threshold = min_effect(cs, "C2")
    t = family[family.tag == POOLED] if len(family) else family
    if len(t):
        with_topic = t.groupby(["model", "probe"]).tag_family.transform(
            lambda f: (f == "topic").any())
        t = t[with_topic.astype(bool)]
    for metric in sorted(set(metrics) - set(t.metric if len(t) else [])):
        rows.append(row(claim, {}, "all", metric, statistic, np.nan, threshold, NA,
                        "metric not computed on tag-restricted subsets (per_tag.metrics)"))
    if t.empty:
        return rows
    keys = ["model", "seed", "probe", "layer_a", "metric"]
    curves = None  # each key's POS and other-family per-tag rows, for family_p
    if per_tag is not None and len(per_tag):
        sub = per_tag[per_tag.tag_family.isin(["pos", other])
                      & ~per_tag.freq_matched.astype(bool)]
        curves = collections.defaultdict(lambda: sub.iloc[:0],
                                         iter(sub.groupby(keys, sort=False)))
    for key, g in t.groupby(keys, sort=True):
        r = dict(zip(keys, key, strict=True))
        step = {fam: converged_step(fg.step_a, fg.value, cs.convergence_threshold)
                for fam, fg in g.groupby("tag_family")}
        scope = f"layer={r['layer_a']}"
        if "pos" not in step or other not in step:
            rows.append(row(claim, r, scope, r["metric"], statistic, np.nan, threshold,
                            NA, f"families present: {sorted(step)} (need pos and {other})"))
            continue
        sp, st = step["pos"], step[other]
        detail = f"pos converged from {fmt(sp)}, {other} from {fmt(st)}"
        gap = (st - sp) / float(g.step_a.max())
        if not np.isfinite(gap):
            rows.append(row(claim, r, scope, r["metric"], statistic, np.nan, threshold, NA,
                            detail + " (a curve with NaN ends)"))
            continue
        p = family_p(curves[key], gap, cs, hash_seed(key)) if curves is not None else np.nan
        rows.append(row(claim, r, scope, r["metric"], statistic, gap, threshold,
                        PASS if gap >= threshold else FAIL, detail, n=2, p=p))
    return rows


def claim_c2b(tagger: pd.DataFrame, cs: Claims) -> list[dict]:
    """C2, the tagger reading, per (model, probe, layer) and metric: LM-vs-POS-tagger
    similarity converges (as progress) before LM-vs-topic-tagger similarity, as a share of
    training (the taggers with their own initialisation)."""
    rows = []
    if tagger.empty or "tag_family" not in tagger:
        return rows
    threshold = min_effect(cs, "C2b")
    statistic = "(step_topic - step_pos) / steps"
    t = tagger[tagger.tag_family.isin(["pos", "topic"])]
    if "shared_init" in t:
        t = t[~t.shared_init.astype(bool)]
    keys = ["model", "seed", "probe", "side", "layer_a", "metric"]
    for key, g in t.groupby(keys, sort=True):
        r = dict(zip(keys, key, strict=True))
        scope = f"layer={r['layer_a']}"
        steps = {fam: converged_step(f.step_a, f.value, cs.convergence_threshold)
                 for fam, f in g.groupby("tag_family")}
        sp, st = steps.get("pos", np.nan), steps.get("topic", np.nan)
        if not (np.isfinite(sp) and np.isfinite(st)):
            rows.append(row("C2b", r, scope, r["metric"], statistic, np.nan, threshold, NA,
                            "needs a POS and a topic tagger's curve"))
            continue
        gap = (st - sp) / float(g.step_a.max())
        rows.append(row("C2b", r, scope, r["metric"], statistic, gap, threshold,
                        PASS if gap >= threshold else FAIL,
                        f"vs POS tagger converged from {fmt(sp)}, vs topic from {fmt(st)}",
                        n=2))
    return rows


def claim_c3(tagger: pd.DataFrame, cs: Claims) -> list[dict]:
    """C3 per (model, probe, tagger) and metric, Δ = similarity at the last LM checkpoint
    minus at the first: the combined claim min(Δ recurrent, −Δ embedding), and its two halves
    on their own, "C3 rec" (every recurrent layer's Δ) and "C3 emb" (−Δ embedding), each named
    " (shared init)" for the shared-init controls (the combined claim too), so that one half
    holding is not hidden by the other failing, nor the controls pooled with the taggers."""
    rows = []
    if tagger.empty:
        return rows
    threshold = min_effect(cs, "C3")
    keys = ["model", "seed", "probe", "model_b", "metric"]
    t = tagger.reset_index(drop=True)
    group = t.groupby(keys, sort=True).ngroup().to_numpy()  # -1: a key is missing
    layers = _c3_deltas(t, keys, group)
    p_rec, p_emb = _c3_p(t, group)
    ids, first = np.unique(group, return_index=True)
    for gid, i in zip(ids, first, strict=True):
        if gid < 0:
            continue
        r = t.loc[i, keys].to_dict()
        delta = layers.get(gid, {})
        emb = [v for (d, _), v in delta.items() if d == 0]
        rec = [v for (d, _), v in delta.items() if d > 0]
        init = SHARED if "shared_init" in t and bool(t.shared_init.iat[i]) else ""
        scope = f"tagger={r['model_b']}{init}"
        detail = ", ".join(f"Δ{n}={v:+.3f}" for (_, n), v in delta.items())
        if not emb or not rec:
            rows.append(row(f"C3{init}", r, scope, r["metric"], "min(Δrec, -Δemb)", np.nan,
                            threshold, NA, detail + " (need embedding and recurrent)"))
            continue
        for claim, statistic, value, p in (
                (f"C3{init}", "min(Δrec, -Δemb)", min(min(rec), -max(emb)),
                 max(p_rec[gid], p_emb[gid])),
                (f"C3 rec{init}", "min(Δrec)", min(rec), p_rec[gid]),
                (f"C3 emb{init}", "-Δemb", -max(emb), p_emb[gid])):
            rows.append(row(claim, r, scope, r["metric"], statistic, value, threshold,
                            PASS if value >= threshold else FAIL, detail, n=len(delta), p=p))
    return rows


def _c3_deltas(t: pd.DataFrame, keys: list[str], group: np.ndarray
               ) -> dict[int, dict[tuple, float]]:
    """{key group: {(depth, layer): value at the layer's last step minus at its first}}, the
    layers in sorted order: one stable sort of the rows by layer and step."""
    layer = t.groupby([*keys, "depth_a", "layer_a"], sort=True).ngroup().to_numpy()
    order = np.lexsort((t.step_a.to_numpy(), layer))
    order = order[layer[order] >= 0]
    if order.size == 0:
        return {}
    ids = layer[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    firsts, lasts = order[starts], order[np.r_[starts[1:], order.size] - 1]
    value = t.value.to_numpy(dtype=float)
    out: dict[int, dict[tuple, float]] = {}
    for i, j, d, name in zip(firsts, lasts, t.depth_a.to_numpy()[firsts],
                             t.layer_a.to_numpy()[firsts], strict=True):
        out.setdefault(int(group[i]), {})[(d, name)] = float(value[j] - value[i])
    return out


def _c3_p(t: pd.DataFrame, group: np.ndarray) -> tuple[dict[int, float], dict[int, float]]:
    """Intersection-union p of C3's halves (recurrent, embedding), per key group: every
    recurrent layer's rise (or the embedding's fall) must exceed what shuffled token
    pairings give (the permutation p the analysis computed on the last checkpoint's rows),
    so a half's p is the largest of theirs (the combined claim's, the larger of the two)."""
    halves = (collections.defaultdict(lambda: float("nan")),
              collections.defaultdict(lambda: float("nan")))
    if "p_increase" not in t:
        return halves
    step = t.step_a.to_numpy()
    last = (pd.Series(step).groupby(group).transform("max").to_numpy() == step) & (group >= 0)
    recurrent = t.depth_a.to_numpy() > 0
    for out, rows, column in ((halves[0], last & recurrent, t.p_increase),
                              (halves[1], last & ~recurrent, t.p_decrease)):
        for gid, p in pd.Series(column.to_numpy(dtype=float)[rows]).groupby(group[rows]):
            out[gid] = float(p.max()) if np.isfinite(p).all() else float("nan")
    return halves


def claim_c4(function_content: pd.DataFrame, cs: Claims) -> list[dict]:
    """C4 per (model, probe, layer) at the final checkpoint: the frequency-matched difference
    of gradient concentration (function − content) relative to the content words' mean, with
    its CI (the type-level bootstrap's, relative likewise) and permutation p."""
    rows = []
    fc = function_content
    if fc.empty:
        return rows
    threshold = min_effect(cs, "C4")
    t = fc[(fc.quantity == "grad") & fc.side.isin(cs.c4.sides)]
    t = t[t.step == t.groupby(["model", "probe"]).step.transform("max")]
    for r in t.sort_values(["model", "probe", "side", "depth"]).to_dict("records"):
        scale = r["content_mean"]
        value = r["difference"] / scale
        detail = (f"step {r['step']}: difference {r['difference']:.4g} of content mean "
                  f"{scale:.4g}; {r['n_function']} function / {r['n_content']} content "
                  f"tokens in {r['n_bins']} frequency bins")
        for claim in ("C4", f"C4 {r.get('kind', '')}".strip()):  # and per architecture
            rows.append(row(claim, r, f"layer={r['layer']}", CONCENTRATION_METRIC,
                            "(mean c(function) - mean c(content)) / mean c(content)", value,
                            threshold, PASS if value >= threshold else FAIL, detail,
                            n=int(r["n_function"] + r["n_content"]),
                            ci=(r["ci_low"] / scale, r["ci_high"] / scale),
                            p=r.get("p_value", np.nan)))
    return rows
