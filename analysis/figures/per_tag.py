"""F5: per-POS-tag similarity to the final model over training (and frequency matched)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pandas as pd

from analysis.figures.common import (
    Figure,
    draw_lines,
    metric_label,
    panel_grid,
    present_metrics,
    similarity_panel,
    stack_figure,
    stack_name,
    step_axis,
    tag_colour,
    tag_order,
)
from analysis.settings import PlotSettings
from analysis.tables import registry as T


def fig_per_tag(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """F5: per-POS-tag similarity to the final model over training (and frequency matched)."""
    t = tables.get(T.PER_TAG, pd.DataFrame())
    if t.empty:
        return
    t = t[t.tag_family == "pos"]
    for (model, probe, side), g in t.groupby(["model", "probe", "side"], sort=True):
        metrics = present_metrics(g, ps.per_tag_metrics)[:1]  # one metric: the first configured
        layers = g.sort_values("depth_a").layer_a.unique()
        matched = g.freq_matched.astype(bool)
        variants = [v for v in (False, True) if (matched == v).any()]
        cols = [(m, v) for m in metrics for v in variants]
        fig, axes = panel_grid(len(cols), len(layers), legend=True)
        for i, (metric, fm) in enumerate(cols):
            for j, layer in enumerate(layers):
                ax = axes[i, j]
                d = g[(g.layer_a == layer) & (g.metric == metric) & (matched == fm)]
                draw_lines(ax, d, "tag", tag_colour, order=tag_order(d.tag))
                if d.baseline.notna().any():
                    b = d.groupby("step_a").baseline.mean().dropna()
                    ax.plot(b.index, b.values, color="grey", ls=":", marker="x", ms=3,
                            label="baseline (mean)")
                step_axis(ax)
                kind = "freq-matched" if fm else "all frequencies"
                similarity_panel(ax, f"{layer}: {kind}", f"{metric_label(metric)} to final",
                                 j == 0)
        types = g[~matched].groupby("tag").n_types.first()
        for ax in axes.flat:  # label tags with their word types once, in the figure legend
            for line in ax.get_lines():
                if line.get_label() in types:
                    line.set_label(f"{line.get_label()} ({int(types[line.get_label()])} types)")
        n = int(g.n_tokens.max())
        column = g.tag_column.iloc[0] if "tag_column" in g else "pos"
        caption = (f"F5 ({stack_name(model, side)}, {probe}). Per POS tag ('{column}' tags), "
                   f"similarity of each layer to its final state on that tag's tokens only, "
                   f"every tag subsampled to the same N = {n} (tags with fewer tokens are left "
                   f"out); the legend gives the number of word types in each tag's sample, and "
                   f"the step-0 point is the initialisation reference. The frequency-matched row "
                   f"draws the same count from each word-frequency bin for every tag (tags that "
                   f"cannot fill a bin are absent). Grey dotted: mean shuffled baseline.")
        yield stack_figure("F5", "f5_per_tag", model, probe, side, fig, caption, axes,
                           legend=True, legend_title="tag")
