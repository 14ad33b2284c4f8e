"""F6 and F6b: mean concentration per POS tag over training, and the frequency-matched
function − content difference."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pandas as pd

from analysis.figures.common import (
    Figure,
    depth_order,
    draw_lines,
    make_figure,
    panel_grid,
    panel_title,
    setting_text,
    stack_figure,
    stack_name,
    step_axis,
    tag_colour,
    tag_order,
)
from analysis.settings import PlotSettings
from analysis.tables import registry as T


def fig_concentration(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """F6: mean concentration per POS tag over training, activations and gradients."""
    t = tables.get(T.CONCENTRATION, pd.DataFrame())
    if t.empty:
        return
    for (model, probe, side), g in t.groupby(["model", "probe", "side"], sort=True):
        quantities = [q for q in ("act", "grad") if q in set(g.quantity)]
        layers = g.sort_values("depth").layer.unique()
        fig, axes = panel_grid(len(quantities), len(layers), legend=True, wsp=0.6)
        for i, q in enumerate(quantities):
            for j, layer in enumerate(layers):
                ax = axes[i, j]
                d = g[(g.quantity == q) & (g.layer == layer)]
                enough = d[(d.tag != "all") & (d.n_tokens >= ps.min_tag_tokens)]
                draw_lines(ax, enough.assign(value=enough["mean"]), "tag", tag_colour, x="step",
                           order=tag_order(enough.tag))
                whole = d[d.tag == "all"].sort_values("step")
                ax.plot(whole.step, whole["mean"], color="black", ls="--", lw=1.2,
                        label="all tokens")
                step_axis(ax)
                col = d.tag_column.iloc[0] if len(d) else "?"
                panel_title(ax, f"{layer}: {'activations' if q == 'act' else 'gradients'} ({col})")
                ax.set_ylabel("mean c = ‖x‖₂/‖x‖₁" if j == 0 else "")
        caption = (f"F6 ({stack_name(model, side)}, {probe}). Mean concentration c = ‖x‖₂/‖x‖₁ "
                   f"per POS tag over training (tags with ≥ {ps.min_tag_tokens} tokens), for "
                   f"activations grouped by the tag of the token read (input-aligned) and for "
                   f"gradients of each token's own loss grouped by the tag of the token "
                   f"predicted (target-aligned). Higher = fewer units carry the vector.")
        yield stack_figure("F6", "f6_concentration", model, probe, side, fig, caption, axes,
                           inner_y=False, legend=True, legend_title="tag")


def fig_function_content(tables: Mapping[str, pd.DataFrame], ps: PlotSettings
                         ) -> Iterator[Figure]:
    """F6b: frequency-matched function − content concentration difference over training."""
    t = tables.get(T.FUNCTION_CONTENT, pd.DataFrame())
    if t.empty:
        return
    stacks = list(t.groupby(["model", "probe", "side"], sort=True).groups)
    quantities = [q for q in ("act", "grad") if q in set(t.quantity)]
    fig, axes = panel_grid(len(quantities), len(stacks), wsp=0.6)
    for i, q in enumerate(quantities):
        for j, (model, probe, side) in enumerate(stacks):
            ax = axes[i, j]
            d = t[(t.quantity == q) & (t.model == model) & (t.probe == probe) & (t.side == side)]
            order, colour = depth_order(d, "layer", "depth")
            draw_lines(ax, d.assign(value=d.difference), "layer", colour, x="step", order=order)
            ax.axhline(0, color="grey", lw=0.8)
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
            step_axis(ax)
            panel_title(ax, f"{stack_name(model, side)}, {probe}:\n"
                        f"{'activations' if q == 'act' else 'gradients'}", fontsize="xx-small")
            ax.set_ylabel("c(function) − c(content)" if j == 0 else "")
            ax.legend(fontsize="xx-small")
    bins = int(t.freq_bins.iloc[0]) if "freq_bins" in t else "?"
    min_types = int(t.min_types.iloc[0]) if "min_types" in t else "?"
    ci = setting_text(tables, "concentration.ci")
    level = f"{float(ci):.0%}" if ci != "?" else "?"
    caption = (f"F6b. Difference of mean concentration between function words (UPOS "
               f"{setting_text(tables, 'function_tags')}) and content words (UPOS "
               f"{setting_text(tables, 'content_tags')}; Brown's own tags mapped to UPOS), "
               f"of the tokens F6's tags align to, within up to {bins} "
               f"word-frequency bins (bins with fewer than {min_types} word types of a class "
               f"merged; weighted mean of per-bin differences), with its {level} CI as a band from "
               f"a bootstrap of word types within bin and class; one line per layer. Expected "
               f"(Saphra & Lopez 2019): gradients > 0 (claim C4).")
    yield make_figure("f6b_function_content", fig, "F6b function vs content words", caption, axes,
                      inner_y=False)
