"""The papers' claims, checked on the analysis tables: PASS/FAIL with the numbers behind them.

Each claim is evaluated per unit (model, probe, stack or layer) and separately under every
similarity metric; thresholds come from the config, fixed before any result was looked at.
A unit that cannot be evaluated (missing data) is reported as NA with the reason.

- C1 lower layers reach their final representation first: Spearman ρ between depth and the
  step from which similarity to the final checkpoint stays >= ``convergence_threshold`` (LM, NMT
  encoder).
- C2 POS-restricted similarity stabilises before topic-restricted similarity (same rule);
  C2b, the tagger reading: similarity to the POS tagger stabilises before similarity to the
  topic tagger (each curve stable once within ``c2b.tolerance`` of its range of its end).
- C3 over training the recurrent layers grow more similar to the final taggers and the
  embedding less (change from the first to the last checkpoint, beyond ``margin``); also its
  halves on their own, "C3 rec" and "C3 emb", under own and shared initialisation.
- C4 function-word gradients are more concentrated than content-word gradients within
  word-frequency bins (final checkpoint; the bootstrap CI of the difference above 0); also
  per architecture ("C4 <model kind>").
- C5 NMT's training stages come in order: the smallest KL to a target-side n-gram LM, then
  lexical accuracy, then reordering, each near its final value (``c5``; per model, seed and
  sentence set, with a sentence-bootstrap p and CI).
"""

from __future__ import annotations

import collections
import itertools
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from analysis.settings import Claims
from analysis.tables import registry as T
from analysis.tables.concentration import METRIC as CONCENTRATION_METRIC
from analysis.tables.rows import ALL, POOLED

CLAIM_COLUMNS = ["claim", "model", "seed", "probe", "scope", "metric", "statistic", "value",
                 "threshold", "ci_low", "ci_high", "n", "p_value", "verdict", "detail"]
CLAIMS = {
    "C1": "lower layers reach their final representation first (LM, NMT encoder)",
    "C2": "POS-restricted similarity stabilises before topic-restricted similarity",
    "C2 size": "POS-restricted similarity stabilises before that of random token subsets of "
               "the same size",
    "C2b": "similarity to the POS tagger stabilises before similarity to the topic tagger",
    "C3": "recurrent layers grow more similar to the taggers over training, the embedding less",
    "C3 rec": "recurrent layers grow more similar to the taggers over training",
    "C3 emb": "the embedding grows less similar to the taggers over training",
    "C4": "function-word gradients are more concentrated than content-word gradients, "
          "within word-frequency bins",
    "C5": "NMT training is a target-side LM first (smallest KL to an n-gram LM), then "
          "lexical translation, then reordering",
}
PASS, FAIL, NA = "PASS", "FAIL", "NA"


def crossing_step(steps: Sequence[float], values: Sequence[float], threshold: float,
                  sustained: bool = True) -> float:
    """The first step whose value is >= ``threshold`` (with ``sustained``: and stays so at
    every later step); NaN if there is none. NaN values count as below the threshold."""
    order = np.argsort(np.asarray(steps, dtype=float))
    s = np.asarray(steps, dtype=float)[order]
    above = np.nan_to_num(np.asarray(values, dtype=float)[order], nan=-np.inf) >= threshold
    if not above.any():
        return float("nan")
    if not sustained:
        return float(s[np.argmax(above)])
    if not above[-1]:
        return float("nan")
    below = np.flatnonzero(~above)
    return float(s[0] if below.size == 0 else s[below[-1] + 1])


def _row(claim: str, r: Mapping, scope: str, metric: str, statistic: str, value: float,
         threshold: float, verdict: str, detail: str, n: int = 0, ci=(np.nan, np.nan),
         p: float = np.nan) -> dict:
    return dict(claim=claim, model=r.get("model", ""), seed=r.get("seed", np.nan),
                probe=r.get("probe", ""), scope=scope, metric=metric, statistic=statistic,
                value=value, threshold=threshold, ci_low=ci[0], ci_high=ci[1], n=n,
                p_value=p, verdict=verdict, detail=detail)


def spearman_p(depth: Sequence, steps: Sequence, rho: float) -> float:
    """Exact one-sided p of a Spearman ρ(depth, step) this large: over every ordering of the
    layers' depths (so with 2 layers it is at least 1/2: two layers cannot establish an
    order); NaN without an observed ρ."""
    if not np.isfinite(rho):
        return float("nan")
    null = [spearmanr(perm, steps).statistic for perm in itertools.permutations(depth)]
    null = np.nan_to_num(np.asarray(null, dtype=float), nan=-np.inf)
    return float(np.mean(null >= rho - 1e-12))


def _fmt(x: float) -> str:
    return "never" if not np.isfinite(x) else f"{x:g}"


def claim_c1(convergence: pd.DataFrame, cs: Claims) -> list[dict]:
    """C1 per (model, probe, stack) and metric: ρ(depth, convergence step) >= c1_min_rho."""
    rows = []
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
            steps.append(crossing_step(lg.step_a, lg.value, cs.convergence_threshold, cs.sustained))
        ranked = np.where(np.isfinite(steps), steps, np.inf)
        rho = float(spearmanr(depth, ranked).statistic) if len(set(ranked)) > 1 else np.nan
        detail = ", ".join(f"{n}@{_fmt(s)}" for n, s in zip(names, steps, strict=True))
        if not np.isfinite(rho):
            detail += " (all layers cross at the same step: no ordering)"
        verdict = PASS if np.isfinite(rho) and rho >= cs.c1.min_rho else FAIL
        rows.append(_row("C1", r, f"stack={r['side']}", r["metric"], "spearman_rho", rho,
                         cs.c1.min_rho, verdict, detail, n=len(depth),
                         p=spearman_p(depth, ranked, rho)))
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


def _family_steps(sums: tuple[np.ndarray, ...], is_pos: np.ndarray, cs: Claims
                  ) -> float:
    """step(tags labelled POS) - step(the others), of their token-weighted pooled curves
    (``sums`` from :func:`_tag_step_sums`, ``is_pos`` a mask over its tags)."""
    _, steps, weighted, tokens, rows = sums
    out = []
    for fam in (is_pos, ~is_pos):
        have = rows[fam].sum(axis=0) > 0  # the steps at which the family has a row
        with np.errstate(divide="ignore", invalid="ignore"):
            pooled = weighted[fam].sum(axis=0)[have] / tokens[fam].sum(axis=0)[have]
        step = crossing_step(steps[have], pooled, cs.convergence_threshold, cs.sustained)
        out.append(np.inf if not np.isfinite(step) else step)
    return out[0] - out[1]


def hash_seed(key) -> int:
    """A seed from a unit's key (stable across processes, unlike hash())."""
    return zlib.crc32("|".join(map(str, key)).encode())


def family_p(per_tag: pd.DataFrame, observed: float, cs: Claims, seed: int) -> float:
    """One-sided permutation p of POS stabilising this much earlier than topic: the tags of
    both families are randomly reassigned to two groups of the families' sizes and the
    pooled curves' crossing steps compared again (``n_permutations`` times)."""
    if not np.isfinite(observed) or cs.n_permutations < 1:
        return float("nan")
    tags = per_tag.drop_duplicates("tag").set_index("tag").tag_family
    n_pos = int((tags == "pos").sum())
    sums = _tag_step_sums(per_tag)
    rng = np.random.default_rng(seed)
    null = []
    for _ in range(cs.n_permutations):
        pick = rng.permutation(tags.index.to_numpy())[:n_pos]
        null.append(_family_steps(sums, np.isin(sums[0], pick), cs))
    null = np.asarray(null, dtype=float)
    return float((1 + np.sum(null <= observed)) / (len(null) + 1))


def claim_c2(family: pd.DataFrame, cs: Claims, metrics: Sequence[str] = (),
             per_tag: pd.DataFrame | None = None, other: str = "topic") -> list[dict]:
    """C2 per (model, probe, layer) and metric: POS crossing step < topic crossing step, on
    the probes that carry topic labels; its p-value permutes tags between the families.
    ``other="random"``: "C2 size", POS against random subsets of the same N tokens.

    ``metrics`` lists every metric of the analysis, so those never computed on tag subsets
    show up as NA instead of silently missing."""
    rows = []
    claim = "C2" if other == "topic" else "C2 size"
    statistic = f"step_pos - step_{other}"
    t = family[family.tag == POOLED] if len(family) else family
    if len(t):
        with_topic = t.groupby(["model", "probe"]).tag_family.transform(
            lambda f: (f == "topic").any())
        t = t[with_topic.astype(bool)]
    for metric in sorted(set(metrics) - set(t.metric if len(t) else [])):
        rows.append(_row(claim, {}, "all", metric, statistic, np.nan, 0.0, NA,
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
        step = {fam: crossing_step(fg.step_a, fg.value, cs.convergence_threshold, cs.sustained)
                for fam, fg in g.groupby("tag_family")}
        scope = f"layer={r['layer_a']}"
        if "pos" not in step or other not in step:
            rows.append(_row(claim, r, scope, r["metric"], statistic, np.nan, 0.0,
                             NA, f"families present: {sorted(step)} (need pos and {other})"))
            continue
        sp, st = step["pos"], step[other]
        diff = (np.inf if not np.isfinite(sp) else sp) - (np.inf if not np.isfinite(st) else st)
        verdict = PASS if np.isfinite(sp) and (not np.isfinite(st) or sp < st) else FAIL
        p = np.nan
        if curves is not None and np.isfinite(diff):
            p = family_p(curves[key], float(diff), cs, hash_seed(key))
        rows.append(_row(claim, r, scope, r["metric"], statistic,
                         float(diff) if np.isfinite(diff) else np.nan, 0.0, verdict,
                         f"pos stable from {_fmt(sp)}, {other} from {_fmt(st)}", n=2, p=p))
    return rows


def stable_step(steps: Sequence[float], values: Sequence[float], tolerance: float) -> float:
    """The first step from which a curve stays within ``tolerance`` × its range (max − min)
    of its final value (NaN for a curve with a NaN)."""
    order = np.argsort(np.asarray(steps, dtype=float))
    s = np.asarray(steps, dtype=float)[order]
    v = np.asarray(values, dtype=float)[order]
    if not np.isfinite(v).all() or not len(v):
        return float("nan")
    near = np.abs(v - v[-1]) <= tolerance * (v.max() - v.min())
    far = np.flatnonzero(~near)
    return float(s[0] if far.size == 0 else s[far[-1] + 1])


def claim_c2b(tagger: pd.DataFrame, cs: Claims) -> list[dict]:
    """C2, the tagger reading, per (model, probe, layer) and metric: LM-vs-POS-tagger
    similarity is stable (``stable_step``) before LM-vs-topic-tagger similarity (the taggers
    with their own initialisation)."""
    rows = []
    if tagger.empty or "tag_family" not in tagger:
        return rows
    t = tagger[tagger.tag_family.isin(["pos", "topic"])]
    if "shared_init" in t:
        t = t[~t.shared_init.astype(bool)]
    keys = ["model", "seed", "probe", "side", "layer_a", "metric"]
    for key, g in t.groupby(keys, sort=True):
        r = dict(zip(keys, key, strict=True))
        scope = f"layer={r['layer_a']}"
        steps = {fam: stable_step(f.step_a, f.value, cs.c2b.tolerance)
                 for fam, f in g.groupby("tag_family")}
        sp, st = steps.get("pos", np.nan), steps.get("topic", np.nan)
        if not (np.isfinite(sp) and np.isfinite(st)):
            rows.append(_row("C2b", r, scope, r["metric"], "step_pos - step_topic", np.nan,
                             0.0, NA, "needs a POS and a topic tagger's curve"))
            continue
        rows.append(_row("C2b", r, scope, r["metric"], "step_pos - step_topic", sp - st, 0.0,
                         PASS if sp < st else FAIL,
                         f"vs POS tagger stable from {_fmt(sp)}, vs topic from {_fmt(st)}",
                         n=2))
    return rows


def claim_c3(tagger: pd.DataFrame, cs: Claims) -> list[dict]:
    """C3 per (model, probe, tagger) and metric, Δ = similarity at the last LM checkpoint
    minus at the first: the combined claim min(Δ recurrent, −Δ embedding) > margin, and its
    two halves on their own, "C3 rec" (every recurrent layer's Δ > margin) and "C3 emb"
    (−Δ embedding > margin), each named " (shared init)" for the shared-init controls, so
    that one half holding is not hidden by the other failing."""
    rows = []
    if tagger.empty:
        return rows
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
        shared = bool(t.shared_init.iat[i]) if "shared_init" in t else False
        init = " (shared init)" if shared else ""
        scope = f"tagger={r['model_b']}{init}"
        detail = ", ".join(f"Δ{n}={v:+.3f}" for (_, n), v in delta.items())
        if not emb or not rec:
            rows.append(_row("C3", r, scope, r["metric"], "min(Δrec, -Δemb)", np.nan,
                             cs.c3.margin, NA, detail + " (need embedding and recurrent)"))
            continue
        for claim, statistic, value, p in (
                ("C3", "min(Δrec, -Δemb)", min(min(rec), -max(emb)),
                 max(p_rec[gid], p_emb[gid])),
                (f"C3 rec{init}", "min(Δrec)", min(rec), p_rec[gid]),
                (f"C3 emb{init}", "-Δemb", -max(emb), p_emb[gid])):
            verdict = PASS if value > cs.c3.margin else FAIL
            rows.append(_row(claim, r, scope, r["metric"], statistic, value, cs.c3.margin,
                             verdict, detail, n=len(delta), p=p))
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
    """C4 per (model, probe, layer) at the final checkpoint: frequency-matched difference of
    gradient concentration (function − content) with its CI above ``c4_min_difference``."""
    rows = []
    fc = function_content
    if fc.empty:
        return rows
    t = fc[(fc.quantity == "grad") & fc.side.isin(cs.c4.sides)]
    t = t[t.step == t.groupby(["model", "probe"]).step.transform("max")]
    for r in t.sort_values(["model", "probe", "side", "depth"]).to_dict("records"):
        low = r["ci_low"] if np.isfinite(r["ci_low"]) else r["difference"]
        verdict = PASS if low > cs.c4.min_difference else FAIL
        detail = (f"step {r['step']}: {r['n_function']} function / {r['n_content']} content "
                  f"tokens in {r['n_bins']} frequency bins")
        for claim in ("C4", f"C4 {r.get('kind', '')}".strip()):  # and per architecture
            rows.append(_row(claim, r, f"layer={r['layer']}", CONCENTRATION_METRIC,
                             "mean c(function) - mean c(content)", r["difference"],
                             cs.c4.min_difference, verdict, detail,
                             n=int(r["n_function"] + r["n_content"]),
                             ci=(r["ci_low"], r["ci_high"]), p=r.get("p_value", np.nan)))
    return rows


def c5_steps(curve: pd.DataFrame, kl_order: int, share: float, sustained: bool
             ) -> dict[str, float]:
    """One unit's (model, seed, set) stage steps from its curves (columns step, measure,
    value): the step of the smallest KL to the ``kl_order``-gram LM, and the steps from
    which lexical accuracy and reordering stay at >= ``share`` of their final value (NaN
    when undefined; ``sustained`` as for :func:`crossing_step`)."""
    out = {}
    kl = curve[curve.measure == f"kl_{kl_order}"].sort_values("step")
    finite = kl[np.isfinite(kl.value.astype(float))]
    out["kl"] = float(finite.step.iloc[int(np.argmin(finite.value))]) if len(finite) else np.nan
    for measure in ("lexical_accuracy", "reordering"):
        c = curve[curve.measure == measure].sort_values("step")
        final = float(c.value.iloc[-1]) if len(c) else np.nan
        out[measure] = (crossing_step(c.step, c.value, share * final, sustained)
                        if np.isfinite(final) and final > 0 else np.nan)
    return out


def c5_gap(steps: Mapping[str, float], last: float) -> float:
    """min(lexical - kl, reordering - lexical) / last step: positive when in order; NaN when
    a stage step is undefined."""
    return float(np.minimum(steps["lexical_accuracy"] - steps["kl"],
                            steps["reordering"] - steps["lexical_accuracy"]) / last)


def claim_c5(curves: pd.DataFrame, resamples: pd.DataFrame | None, cs: Claims
             ) -> list[dict]:
    """C5 per (model, seed, set): the stages in order (``c5_gap`` > ``c5.min_gap``); the p
    is the share of sentence-bootstrap resamples (with the observed) not in order, the CI
    their 2.5 and 97.5 percentiles. NA, with the reason, when a stage step is undefined."""
    rows = []
    if curves is None or curves.empty:
        return rows
    for key, g in curves.groupby(["model", "seed", "set"], sort=True):
        r = dict(zip(["model", "seed", "probe"], key, strict=True))
        last = float(g.step.max())
        steps = c5_steps(g, cs.c5.kl_order, cs.c5.share, cs.sustained)
        detail = (f"KL to the {cs.c5.kl_order}-gram LM smallest at {_fmt(steps['kl'])}, lexical "
                  f"accuracy at {cs.c5.share:g} of final from {_fmt(steps['lexical_accuracy'])}, "
                  f"reordering from {_fmt(steps['reordering'])} (of {last:g})")
        common = dict(scope=f"set={key[2]}", metric=T.NMT_STAGES,  # the measures of that table
                      statistic="min(lexical - kl, reordering - lexical) / steps",
                      threshold=cs.c5.min_gap)
        gap = c5_gap(steps, last)
        if not np.isfinite(gap):
            undefined = [m for m, v in steps.items() if not np.isfinite(v)]
            rows.append(_row("C5", r, **common, value=np.nan, verdict=NA,
                             detail=f"{detail}: {', '.join(undefined)} undefined (a measure "
                                    "that is NaN or 0 at the last checkpoint)"))
            continue
        ci, p = (np.nan, np.nan), np.nan
        if resamples is not None and len(resamples):
            mine = resamples[(resamples.model == key[0]) & (resamples.seed == key[1])
                             & (resamples.set == key[2]) & (resamples["resample"] > 0)]
            gaps = np.array([c5_gap(c5_steps(rg, cs.c5.kl_order, cs.c5.share, cs.sustained),
                                    last)
                             for _, rg in mine.groupby("resample", sort=True)])
            gaps[np.isnan(gaps)] = -np.inf  # an undefined stage is not in order
            if len(gaps):
                p = float((1 + np.sum(gaps <= cs.c5.min_gap)) / (1 + len(gaps)))
                finite = gaps[np.isfinite(gaps)]
                ci = (tuple(np.percentile(finite, [2.5, 97.5])) if len(finite) == len(gaps)
                      else (np.nan, np.nan))
        rows.append(_row("C5", r, **common, value=gap,
                         verdict=PASS if gap > cs.c5.min_gap else FAIL, detail=detail,
                         n=int(g.sentences.max()) if "sentences" in g else 0, ci=ci, p=p))
    return rows


def evaluate(tables: Mapping[str, pd.DataFrame], cs: Claims) -> pd.DataFrame:
    """Every claim on every unit and metric (one row each, columns CLAIM_COLUMNS); rows whose
    metric could not be computed (``na_reason``) are left out."""
    empty = pd.DataFrame()
    tables = {name: t[t.na_reason.isna()] if "na_reason" in t else t
              for name, t in tables.items()}
    # the claims read similarities (higher = more alike); distances are reported only
    tables = {name: t[t.metric_kind != "distance"] if "metric_kind" in t else t
              for name, t in tables.items()}
    conv = tables.get(T.CONVERGENCE, empty)
    metrics = sorted(conv.metric.unique()) if len(conv) else []
    family, tagger = tables.get(T.FAMILY, empty), tables.get(T.TAGGER, empty)
    rows = []
    if len(conv):
        rows += claim_c1(conv, cs)
    rows += claim_c2(family, cs, metrics, tables.get(T.PER_TAG))
    rows += claim_c2(family, cs, metrics, tables.get(T.PER_TAG), other="random")
    rows += claim_c2b(tagger, cs)
    rows += claim_c3(tagger, cs)
    rows += claim_c4(tables.get(T.FUNCTION_CONTENT, empty), cs)
    rows += claim_c5(tables.get(T.NMT_STAGES), tables.get(T.NMT_STAGE_RESAMPLES), cs)
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def statement(claim: str) -> str:
    """What a claim says; a control's claim (" (shared init)") says what its own does, and a
    claim on one architecture ("C4 lstm_lm") what the claim does, on that architecture."""
    own = claim.replace(" (shared init)", "")
    if own in CLAIMS:
        return CLAIMS[own]
    base, _, kind = own.partition(" ")
    return f"{CLAIMS[base]} ({kind})" if base in CLAIMS else ""


def summarize(claims: pd.DataFrame) -> pd.DataFrame:
    """Per claim and metric: units passing, failing, not evaluable, and the verdict (PASS when
    every evaluated unit passes, FAIL when any fails, NA when none could be evaluated)."""
    rows = []
    for (claim, metric), g in claims.groupby(["claim", "metric"], sort=True):
        n_pass, n_fail = int((g.verdict == PASS).sum()), int((g.verdict == FAIL).sum())
        verdict = NA if n_pass + n_fail == 0 else (FAIL if n_fail else PASS)
        rows.append(dict(claim=claim, metric=metric, statement=statement(claim),
                         n_pass=n_pass, n_fail=n_fail, n_na=int((g.verdict == NA).sum()),
                         verdict=verdict))
    return pd.DataFrame(rows, columns=["claim", "metric", "statement", "n_pass", "n_fail",
                                       "n_na", "verdict"])


# the sign that makes a claim's unit statistic positive when the claim holds
SIGN = {"C2": -1.0, "C2b": -1.0}  # step_pos - step_other: negative when POS is first


def sign_flip_p(x: np.ndarray, exact_max: int, n_random: int, seed: int) -> float:
    """One-sided p of mean(x) > 0 under sign flips of each x: exact over every assignment
    for at most ``exact_max`` values, else ``n_random`` random ones (plus the observed)."""
    x = np.asarray(x, dtype=float)
    if not len(x):
        return float("nan")
    observed = x.mean()
    if len(x) <= exact_max:
        signs = 1 - 2 * ((np.arange(2 ** len(x))[:, None] >> np.arange(len(x))) & 1)
        null = signs @ x / len(x)
        return float(np.mean(null >= observed - 1e-12 * max(1.0, abs(observed))))
    rng = np.random.default_rng(seed)
    null = rng.choice([-1.0, 1.0], size=(n_random, len(x))) @ x / len(x)
    return float((1 + np.sum(null >= observed - 1e-12 * max(1.0, abs(observed))))
                 / (1 + n_random))


def pooled_test(claims: pd.DataFrame, cs: Claims) -> pd.DataFrame:
    """Per claim and metric, one test over all its evaluated units (every seed, probe and
    layer or pair): the mean of the unit statistics signed so that the claim is positive
    (``SIGN``), and its sign-flip p (``sign_flip_p``)."""
    rows = []
    done = claims[claims.verdict.isin([PASS, FAIL])]
    for (claim, metric), g in done.groupby(["claim", "metric"], sort=True):
        x = SIGN.get(claim.split()[0], 1.0) * g.value.astype(float).to_numpy()
        x = x[np.isfinite(x)]
        rows.append(dict(claim=claim, metric=metric, pooled_units=len(x),
                         pooled_effect=float(x.mean()) if len(x) else np.nan,
                         pooled_p=sign_flip_p(x, cs.pooled_exact_max, cs.pooled_permutations,
                                              hash_seed((claim, metric)))))
    return pd.DataFrame(rows, columns=["claim", "metric", "pooled_units", "pooled_effect",
                                       "pooled_p"])


HOLDS, MIXED, NOT_HOLD, UNTESTED = "holds", "mixed", "does not hold", "not evaluated"
# the figure (name prefix) that shows each claim
FIGURES = {"C1": "f2_convergence", "C2": "f3_family", "C2b": "f4_tagger", "C3": "f4_tagger",
           "C4": "f6b_function_content", "C5": "f7_nmt_stages"}


def answer(claims: pd.DataFrame, cs: Claims, level: float = 0.95) -> pd.DataFrame:
    """The verdict per claim across metrics and seeds, with the effect.

    Per metric, the share of evaluated (unit, seed) pairs that pass: the metric supports the
    claim at a share >= ``support``, contradicts it at <= 1 - ``support``, else is mixed. A
    claim holds when every metric that evaluated it supports it, does not hold when every one
    contradicts it, and is mixed otherwise. The effect is the claim's statistic averaged over
    units, per seed, then its mean with a t-interval over seeds (one seed: the range over
    units). Each metric's pooled test (``pooled_test``) is beside it: the metric is robust
    when it supports the claim and its pooled p < ``alpha``, and a claim is **robust** when
    at least ``robust_share`` of its evaluated metrics are. Rows: one per claim and metric,
    and one per claim (metric "all")."""
    from scipy import stats

    support = cs.support
    pooled = pooled_test(claims, cs).set_index(["claim", "metric"])
    rows = []
    for claim, gc in claims.groupby("claim", sort=True):
        per_metric = []
        for metric, g in gc.groupby("metric", sort=True):
            done = g[g.verdict.isin([PASS, FAIL])]
            share = float((done.verdict == PASS).mean()) if len(done) else np.nan
            significant = (done.verdict == PASS) & (done.p_value < cs.alpha) if "p_value" in \
                done else pd.Series(False, index=done.index)
            sig_share = float(significant.mean()) if len(done) else np.nan
            verdict = (UNTESTED if not len(done) else HOLDS if share >= support
                       else NOT_HOLD if share <= 1 - support else MIXED)
            finite = done[np.isfinite(done.value.astype(float))]
            by_seed = finite.groupby(finite.seed.fillna(-1)).value.mean()
            if len(by_seed) >= 2:
                half = (stats.t.ppf((1 + level) / 2, len(by_seed) - 1) * by_seed.std(ddof=1)
                        / np.sqrt(len(by_seed)))
                effect, low, high = by_seed.mean(), by_seed.mean() - half, by_seed.mean() + half
                interval = f"{level:.0%} CI over {len(by_seed)} seeds"
            else:
                effect = finite.value.mean() if len(finite) else np.nan
                low, high = (finite.value.min(), finite.value.max()) if len(finite) else (
                    np.nan, np.nan)
                interval = f"range over {len(finite)} units"
            test = pooled.loc[(claim, metric)] if (claim, metric) in pooled.index else None
            pooled_p = float(test.pooled_p) if test is not None else np.nan
            per_metric.append(dict(
                claim=claim, metric=metric, verdict=verdict, pass_share=share,
                significant_share=sig_share, pooled_p=pooled_p,
                pooled_effect=float(test.pooled_effect) if test is not None else np.nan,
                robust=verdict == HOLDS and bool(pooled_p < cs.alpha),
                evaluated=len(done), statistic=g.statistic.iloc[0], effect=effect, low=low,
                high=high, interval=interval, figure=FIGURES.get(claim.split()[0], "")))
        tested = [r for r in per_metric if r["verdict"] != UNTESTED]
        verdicts = [r["verdict"] for r in tested]
        overall = (UNTESTED if not tested else HOLDS if set(verdicts) == {HOLDS}
                   else NOT_HOLD if set(verdicts) == {NOT_HOLD} else MIXED)
        n_robust = sum(r["robust"] for r in tested)
        rows.append(dict(claim=claim, metric="all", verdict=overall,
                         robust=bool(tested) and n_robust >= cs.robust_share * len(tested),
                         evaluated=sum(r["evaluated"] for r in per_metric),
                         statement=statement(claim), figure=FIGURES.get(claim.split()[0], ""),
                         metrics_holding=f"{verdicts.count(HOLDS)} of {len(tested)}",
                         metrics_significant=f"{n_robust} of {len(tested)}"))
        rows += per_metric
    return pd.DataFrame(rows)


__all__ = ["CLAIMS", "CLAIM_COLUMNS", "Claims", "answer", "claim_c1", "claim_c2",
           "claim_c2b", "claim_c3", "claim_c4", "claim_c5", "crossing_step", "evaluate",
           "pooled_test", "sign_flip_p", "stable_step", "summarize"]
