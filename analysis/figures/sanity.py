"""The sanity checks: S1 similarity against token count, S2 seed against seed, S3 CKA against
the CCA family, S4 sensitivity and specificity."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from scipy.stats import spearmanr

from analysis.figures.common import (
    Figure,
    depth_colour,
    make_figure,
    metric_label,
    metric_row,
    panel_grid,
    panel_title,
    present_metrics,
    similarity_panel,
)
from analysis.settings import PlotSettings
from analysis.tables import registry as T


def fig_sanity_tokens(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """S1: similarity against token count, random Gaussian data and init vs final."""
    t = tables.get(T.SANITY_TOKENS, pd.DataFrame())
    if t.empty:
        return
    fig, axes, panels = metric_row(t, present_metrics(t, ps.metrics))
    for j, ax, metric, d in panels:
        gauss = d[d.source == "gaussian"].sort_values("n_tokens")
        ax.plot(gauss.n_tokens, gauss.value, color="black", marker="o", ms=3,
                label=f"Gaussian ({int(gauss.dim.max()) if len(gauss) else '?'} dims)")
        real = d[d.source == "init_vs_final"]
        for k, (layer, lg) in enumerate(real.groupby("layer", sort=False)):
            lg = lg.sort_values("n_tokens")
            c = depth_colour(k)
            ax.plot(lg.n_tokens, lg.value, color=c, marker="o", ms=3,
                    label=f"init vs final: {layer}")
            if lg.baseline.notna().any():
                ax.plot(lg.n_tokens, lg.baseline, color=c, ls=":", marker="x", ms=3)
        ax.set_xscale("log")
        counts = sorted(d.n_tokens.unique())
        ax.set_xticks(counts, [f"{int(c)}" for c in counts], rotation=45)
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("tokens")
        similarity_panel(ax, metric_label(metric), "similarity", j == 0)
    model = t[t.source == "init_vs_final"].model.unique()
    caption = (f"S1. Similarity against the number of tokens for two independent Gaussian "
               f"representations (true similarity 0) and for each layer at initialisation vs "
               f"the final checkpoint ({', '.join(model) or 'no model'}; dotted: shuffled "
               f"baseline). CCA-type values fall as N grows: their bias at small N is why every "
               f"comparison here reports a baseline at the same size.")
    yield make_figure("s1_token_count", fig, "S1 similarity vs token count", caption, axes,
                      legend=True)


def fig_seeds(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """S2: each layer of a final model vs the same model trained with another seed."""
    t = tables.get(T.SEEDS, pd.DataFrame())
    if t.empty:
        return
    fig, axes, panels = metric_row(t, present_metrics(t, ps.metrics))
    keys = sorted({(m, p) for m, p in zip(t.model, t.probe, strict=True)})
    palette = sns.color_palette("tab10" if len(keys) <= 10 else "tab20", len(keys)).as_hex()
    colours = dict(zip(keys, palette, strict=True))
    for j, ax, metric, rows in panels:
        for (model, probe), g in rows.groupby(["model", "probe"]):
            for point, ls, marker in (("final", "-", "o"), ("init", ":", "x")):
                d = g[g.checkpoint == point]
                if d.empty:
                    continue
                # mean over seed pairs; several sides (NMT) continue the depth axis
                d = d.assign(pos=d.groupby(["side", "depth"], sort=False).ngroup())
                m = d.groupby("pos").agg(value=("value", "mean"), lo=("value", "min"),
                                         hi=("value", "max"))
                label = f"{model}/{probe}" if point == "final" else None
                ax.plot(m.index, m.value, ls=ls, marker=marker, ms=3,
                        color=colours[(model, probe)], label=label)
                if point == "final":
                    ax.fill_between(m.index, m.lo, m.hi, color=colours[(model, probe)],
                                    alpha=0.15, lw=0)
        ax.set_xlabel("layer (0 = embedding)")
        similarity_panel(ax, metric_label(metric), "seed vs seed similarity", j == 0)
    pairs = t[["seed_a", "seed_b"]].drop_duplicates()
    caption = (f"S2. Each layer of a final model against the same layer of the same model "
               f"trained with another seed (solid: mean over {len(pairs)} seed pairs, band: "
               f"their range; dotted: the two random initialisations; NMT layers count on "
               f"from the encoder into the decoder). Same tokens on both "
               f"sides. Similarity well below 1 at the end bounds how close two training runs "
               f"get: convergence curves are relative to that.")
    yield make_figure("s2_seed_to_seed", fig, "S2 seed-to-seed similarity", caption, axes,
                      legend=True)


def fig_cka_vs_svcca(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """S3: agreement of CKA with the CCA-family metrics on the same comparisons."""
    t = tables.get(T.CONVERGENCE, pd.DataFrame())
    if t.empty or "cka" not in set(t.metric):
        return
    t = t[t.step_a != t.step_b]
    keys = ["model", "probe", "side", "layer_a", "step_a", "seed"]
    wide = t.pivot_table(index=keys, columns="metric", values="value").reset_index()
    others = [m for m in present_metrics(t, None) if m != "cka"]  # every metric of the table
    if not others:
        return
    fig, axes = panel_grid(1, len(others), w=2.2, h=2.2, legend=True)
    models = sorted(wide.model.unique())
    colours = dict(zip(models, sns.color_palette("tab10", len(models)).as_hex(), strict=True))
    notes = []
    for j, m in enumerate(others):
        ax = axes[0, j]
        d = wide.dropna(subset=[m, "cka"])
        for model in models:
            dm = d[d.model == model]
            ax.scatter(dm[m], dm["cka"], s=8, color=colours[model], label=model, alpha=0.8)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        rho = spearmanr(d[m], d["cka"]).statistic if len(d) > 2 else np.nan
        panel_title(ax, f"Spearman ρ = {rho:.2f}")
        ax.set_xlabel(metric_label(m))
        ax.set_ylabel("linear CKA" if j == 0 else "")
        notes.append(f"{metric_label(m)} ρ = {rho:.2f}")
    caption = (f"S3. Linear CKA against the CCA-family metrics on the same convergence "
               f"comparisons (each layer at each non-final checkpoint vs its final state). "
               f"Rank agreement: {'; '.join(notes)}. Bottom-up conclusions should not depend on "
               f"the metric.")
    yield make_figure("s3_cka_vs_svcca", fig, "S3 CKA vs CCA-family", caption, axes, legend=True)


def fig_sensitivity(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """S4: each final layer against itself with its top-j principal components removed."""
    t = tables.get(T.SENSITIVITY, pd.DataFrame())
    if t.empty:
        return
    t = t[t.test == "pcs_removed"]
    summary = tables.get(T.SENSITIVITY_SUMMARY, pd.DataFrame())
    verdicts = {} if summary.empty else {
        (r.test, r.metric): r.verdict for r in summary.itertuples()}
    fig, axes, panels = metric_row(t, present_metrics(t, None))
    models = sorted(t.model.unique())
    colours = dict(zip(models, sns.color_palette("tab10", len(models)).as_hex(), strict=False))
    for j, ax, metric, d in panels:
        labelled = set()
        for (model, _, _, _), g in d.groupby(["model", "probe", "side", "layer"]):
            g = g.sort_values("j")
            ax.plot(g.j, g.value, color=colours[model], lw=0.8, alpha=0.7,
                    label=None if model in labelled else model)
            labelled.add(model)
        ax.set_xlabel("top principal components removed")
        monotone = verdicts.get(("pcs_removed", metric), "?")
        rotation = verdicts.get(("rotation_scaling", metric), "?")
        panel_title(ax, f"{metric_label(metric)}\nmonotone: {monotone}; rotation: {rotation}",
                    fontsize="xx-small")
        ax.set_ylabel("similarity to the intact layer" if j == 0 else "")
    caption = ("S4 (Ding et al. 2021). Each final layer against itself with its top-j "
               "principal components removed from one side, one line per layer; a metric that "
               "is sensitive to what carries the variance falls monotonically in j (verdict in "
               "each title, with whether a random rotation plus isotropic scaling left the "
               "metrics that claim that invariance unchanged). The table 'sensitivity_summary' "
               "adds, with several seeds, whether final-vs-final across seeds exceeds "
               "initial-vs-final.")
    yield make_figure("s4_sensitivity", fig, "S4 sensitivity and specificity", caption, axes,
                      inner_y=False, legend=True)
