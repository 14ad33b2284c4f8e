"""F2: each layer against its own final state over training, with k (the directions holding
the variance share SVCCA keeps) in the last column."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import matplotlib.pyplot as plt
import pandas as pd

from analysis.figures.common import (
    Figure,
    baseline_lines,
    depth_order,
    draw_lines,
    make_figure,
    metric_label,
    panel_grid,
    panel_title,
    present_metrics,
    setting_text,
    similarity_panel,
    slug,
    stack_name,
    step_axis,
    token_range,
)
from analysis.settings import PlotSettings
from analysis.tables import registry as T


def _seed_bounds(ax: plt.Axes, seeds: pd.DataFrame, model: str, probe: str, side: str,
                 metric: str, colour: Callable[[object], str]) -> None:
    """S2 on a convergence panel: how similar two seeds' final layers are (the ceiling a
    curve toward its own final state can be read against) and two initialisations (floor)."""
    if seeds.empty:
        return
    s = seeds[(seeds.model == model) & (seeds.probe == probe) & (seeds.side == side)
              & (seeds.metric == metric)]
    for (layer, point), g in s.groupby(["layer", "checkpoint"]):
        ax.axhline(g.value.mean(), color=colour(layer), lw=0.8,
                   ls="--" if point == "final" else "-.")


def fig_convergence(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """F2: each layer vs its own final state over training, per probe, model and metric; the
    last column is k (directions holding 99% of the variance), which moves 99%-SVCCA."""
    t = tables.get(T.CONVERGENCE, pd.DataFrame())
    kdim = tables.get(T.INTRINSIC_DIM, pd.DataFrame())
    seeds = tables.get(T.SEEDS, pd.DataFrame())
    if t.empty:
        return
    for probe, g in t.groupby("probe", sort=True):
        stacks = list(g.groupby(["model", "side"], sort=True).groups)
        metrics = present_metrics(g, ps.metrics)
        with_k = len(kdim) > 0
        fig, axes = panel_grid(len(stacks), len(metrics) + with_k, hsp=0.8, wsp=0.5)
        for i, (model, side) in enumerate(stacks):
            for j, metric in enumerate(metrics):
                ax = axes[i, j]
                d = g[(g.model == model) & (g.side == side) & (g.metric == metric)]
                order, colour = depth_order(d)
                draw_lines(ax, d, "layer_a", colour, order=order)
                baseline_lines(ax, d, "layer_a", colour)
                _seed_bounds(ax, seeds, model, probe, side, metric, colour)
                step_axis(ax)
                similarity_panel(ax, f"{stack_name(model, side)}: {metric_label(metric)}",
                                 "similarity to final", j == 0)
            if with_k:
                ax = axes[i, -1]
                d = kdim[(kdim.probe == probe) & (kdim.model == model) & (kdim.side == side)]
                order, colour = depth_order(d, "layer", "depth")
                draw_lines(ax, d, "layer", colour, x="step", y="k", order=order)
                step_axis(ax)
                ax.set_ylim(bottom=0)
                dim = int(d.dim.max()) if len(d) else 0
                panel_title(ax, f"k ({setting_text(tables, 'variance')} var.), dim {dim}")
            axes[i, -1].legend(*axes[i, 0].get_legend_handles_labels(), fontsize="xx-small",
                               title="layer", title_fontsize="xx-small")
        caption = (f"F2 ({probe}). Similarity of each layer at each checkpoint to the same layer "
                   f"at the final checkpoint ({token_range(g)} tokens); colour = depth (dark = "
                   f"input side). Dotted with crosses: shuffled-token baseline at the same size "
                   f"(computed at the F1 checkpoints). Claim C1 reads each curve as progress, "
                   f"(s_t - s_0) / (1 - s_0): a layer has converged once it stays at "
                   f"{setting_text(tables, 'claims.convergence_threshold')} of its total change "
                   f"(not at a raw similarity). Last column: k, the number of directions holding "
                   f"{setting_text(tables, 'variance')} of the variance (rule "
                   f"'{setting_text(tables, 'variance_rule')}'). Expected: lower layers converge "
                   f"first." + (" Flat lines (several seeds): dashed, the ceiling, each final "
                                "layer against the same model trained with another seed (S2); "
                                "dash-dotted, the floor, two random initialisations."
                                if len(seeds) else ""))
        yield make_figure(slug("f2_convergence", probe), fig, f"F2 convergence — {probe}",
                          caption)
