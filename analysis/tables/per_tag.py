"""The tag-restricted tables (F5, F3): each tag's tokens subsampled to one common N, every
layer vs its final state; random N-token subsets (the size control); and the per-tag rows
pooled per tag family."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.comparisons import compare, full_basis, metric_specs
from analysis.runs import Probe, stable_seed, tagged_word_and_freq
from analysis.settings import AnalysisSettings
from analysis.tables.convergence import fraction_steps
from analysis.tables.registry import FAMILY, PER_TAG
from analysis.tables.rows import POOLED, base_row, frame


def common_n(counts: pd.Series, settings: AnalysisSettings) -> int:
    """One N for every tag of a (probe, side): the count of the ``min_tags``-th largest tag,
    clamped to [min_n, max_n]. Depends on token counts only, never on results."""
    ordered = np.sort(counts.to_numpy())[::-1]
    nth = ordered[settings.per_tag.min_tags - 1] if len(ordered) >= settings.per_tag.min_tags \
        else 0
    return int(np.clip(nth, settings.per_tag.min_n, settings.per_tag.max_n))


def tag_samples(tokens: pd.DataFrame, tag_column: str, n: int, settings: AnalysisSettings,
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


def random_samples(valid: np.ndarray, n: int, settings: AnalysisSettings, probe: str, side: str
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


def per_tag(p: Probe, settings: AnalysisSettings) -> pd.DataFrame:
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
                        base = base_row(
                            p.run, p.name, side, analysis=PER_TAG, model_b=p.run.name,
                            step_a=step, step_b=final, fraction_a=step / final,
                            layer_a=layer, layer_b=layer, depth_a=depth, depth_b=depth,
                            tag=tag, tag_family=family, freq_matched=matched,
                            n_types=n_types, tag_tokens=n_all, tag_column=column)
                        seed = stable_seed(settings.seed, p.run.name, p.name, layer, step, tag)
                        shuffles = settings.baseline_shuffles if step in picked else 0
                        for row in compare(b, ref, specs, shuffles, seed):
                            rows.append({**base, **row})
    table = frame(rows)
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
        return frame([])
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
    pooled["analysis"] = FAMILY
    pooled["tag"] = POOLED
    pooled["freq_matched"] = False
    return frame(pooled.to_dict("records"))

