"""F3 and F4: similarity restricted to tag families, and to the final POS / semantic-tag /
topic taggers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pandas as pd

from analysis.figures.common import (
    FAMILY_COLOURS,
    Figure,
    baseline_lines,
    draw_lines,
    metric_label,
    panel_grid,
    present_metrics,
    setting_text,
    similarity_panel,
    stack_figure,
    step_axis,
    token_range,
)
from analysis.settings import PlotSettings
from analysis.tables import registry as T


def fig_family(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """F3: LM vs its final self on all tokens and restricted to POS / topic families."""
    fam = tables.get(T.FAMILY, pd.DataFrame())
    conv = tables.get(T.CONVERGENCE, pd.DataFrame())
    if fam.empty:
        return
    for (model, probe), g in fam.groupby(["model", "probe"], sort=True):
        if g[g.tag_family != "random"].tag_family.nunique() < 2:  # families: POS vs topic
            continue
        metrics = present_metrics(g, ps.per_tag_metrics)
        layers = g.sort_values("depth_a").layer_a.unique()
        whole = conv[(conv.model == model) & (conv.probe == probe)] if len(conv) else conv
        fig, axes = panel_grid(len(metrics), len(layers), legend=True)
        for i, metric in enumerate(metrics):
            for j, layer in enumerate(layers):
                ax = axes[i, j]
                d = g[(g.metric == metric) & (g.layer_a == layer)]
                if len(whole):
                    w = whole[(whole.metric == metric) & (whole.layer_a == layer)]
                    draw_lines(ax, w, "tag_family", FAMILY_COLOURS.get,
                               label=lambda k: "all tokens")
                draw_lines(ax, d, "tag_family", FAMILY_COLOURS.get,
                           label=lambda k: f"{k}-restricted")
                baseline_lines(ax, d, "tag_family", FAMILY_COLOURS.get)
                step_axis(ax)
                similarity_panel(ax, f"{layer}: {metric_label(metric)}", "similarity to final",
                                 j == 0)
        n = g.n_tokens / g.n_tags.where(g.n_tags > 0)
        caption = (f"F3 ({model}, {probe}). Similarity to the final LM over training: all tokens "
                   f"(black), and restricted to tag families: each POS tag's / each topic's "
                   f"(genre's) tokens subsampled to N = {int(n.min()) if n.notna().any() else '?'}"
                   f" and compared separately, pooled as a mean weighted by the tag's token "
                   f"count; random: random subsets of N tokens of any tag (the size control). "
                   f"Dotted: shuffled baselines. Expected (Saphra & Lopez): POS stabilises "
                   f"earlier than topic (claim C2), and than random subsets (C2 size); the "
                   f"claim reads each curve as progress, the share of its total change made "
                   f"(converged at {setting_text(tables, 'claims.convergence_threshold')}).")
        yield stack_figure("F3", "f3_family", model, probe, "", fig, caption, axes, legend=True)


def fig_tagger(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """F4: each LM layer over training vs the same layer of the final taggers."""
    t = tables.get(T.TAGGER, pd.DataFrame())
    if t.empty:
        return
    if "shared_init" not in t:
        t = t.assign(shared_init=False)
    for (model, probe), g in t.groupby(["model", "probe"], sort=True):
        metrics = present_metrics(g, ps.metrics)
        layers = g.sort_values("depth_a").layer_a.unique()
        fam = dict(zip(g.model_b, g.tag_family, strict=False))
        shared = dict(zip(g.model_b, g.shared_init.astype(bool), strict=False))

        def colour(tagger, fam=fam):
            return FAMILY_COLOURS.get(fam[tagger], "#555555")

        fig, axes = panel_grid(len(layers), len(metrics), legend=True)
        for i, layer in enumerate(layers):
            for j, metric in enumerate(metrics):
                ax = axes[i, j]
                d = g[(g.metric == metric) & (g.layer_a == layer)]
                for own in (True, False):
                    part = d[d.model_b.map(shared) != own]
                    draw_lines(ax, part, "model_b", colour, ls="-" if own else "--",
                               label=lambda k, own=own, fam=fam: f"{fam[k]} tagger"
                               + ("" if own else " (shared init)"))
                    if own:  # the untrained LM (another seed than the tagger's): the floor
                        first = part[part.step_a == part.step_a.min()]
                        for r in first.itertuples():
                            ax.axhline(r.value, color=colour(r.model_b), ls="-.", lw=0.8)
                baseline_lines(ax, d, "model_b", colour)
                step_axis(ax)
                similarity_panel(ax, f"{layer}: {metric_label(metric)}", "similarity to tagger",
                                 j == 0)
        caption = (f"F4 ({model}, {probe}). Similarity of each layer at each checkpoint to the "
                   f"final POS / semantic-tag / topic tagger (an LSTM with lstm_lm_paper's "
                   f"architecture, trained to predict the next word's tag; a layer without a "
                   f"namesake is compared with the tagger's top layer) on the same "
                   f"{token_range(g)} tokens. Solid: taggers with their own initialisation; "
                   f"dash-dotted, flat: the untrained model's similarity to them (the floor: "
                   f"another seed); dotted with crosses: shuffled baselines; dashed: the "
                   f"control taggers started from lstm_lm_paper's exact initial weights, whose "
                   f"early similarity measures that shared initialisation. Expected (Saphra & "
                   f"Lopez 2019): the recurrent layer rises, the embedding falls (claim C3); "
                   f"the POS tagger's curves converge (as progress) before the topic "
                   f"tagger's (C2b).")
        yield stack_figure("F4", "f4_tagger", model, probe, "", fig, caption, axes, legend=True)
