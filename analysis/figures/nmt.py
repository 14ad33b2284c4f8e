"""F7: the stages of NMT training (C5): KL to target-side n-gram LMs, lexical accuracy,
reordering and BLEU of each translation model on one time axis, per sentence set."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd

from analysis.claims import c5_steps
from analysis.figures.common import (
    DEPTH_COLOURS,
    Figure,
    draw_lines,
    make_figure,
    panel_grid,
    panel_title,
    setting_text,
    slug,
    step_axis,
)
from analysis.settings import PlotSettings
from analysis.tables import registry as T

ROWS = [("kl", "KL(NMT ‖ n-gram LM), nats"), ("lexical_accuracy", "lexical accuracy"),
        ("reordering", "reordering (Kendall-τ distance)"), ("bleu", "BLEU (greedy)")]
SET_COLOURS = {"test2016": "#1f77b4", "pud": "#d62728"}


def _c5(tables: Mapping[str, pd.DataFrame]) -> tuple[int, float, bool] | None:
    """C5's kl_order, share and sustained as the tables' settings recorded them (None when
    they are not recorded: then no stage is marked)."""
    values = [setting_text(tables, key, "") for key in
              ("claims.c5.kl_order", "claims.c5.share", "claims.sustained")]
    return (int(values[0]), float(values[1]), values[2] == "True") if all(values) else None


def fig_nmt_stages(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """F7 per translation model: one column per sentence set, rows KL (one line per n-gram
    order), lexical accuracy, reordering (the references' own value dashed) and BLEU; dotted
    verticals at C5's three stage steps."""
    curves = tables.get(T.NMT_STAGES, pd.DataFrame())
    if curves.empty:
        return
    c5 = _c5(tables)
    for model, g in curves.groupby("model", sort=True):
        sets = sorted(g.set.unique(), key=lambda s: (s != "test2016", s))
        fig, axes = panel_grid(len(ROWS), len(sets), w=3.2, h=1.4, hsp=0.35, wsp=0.6)
        for j, name in enumerate(sets):
            gs = g[g.set == name]
            steps = c5_steps(gs, *c5) if c5 else {}
            for i, (what, label) in enumerate(ROWS):
                ax = axes[i, j]
                if what == "kl":
                    kl = gs[gs.measure.str.startswith("kl_")]
                    draw_lines(ax, kl, "measure", lambda m: DEPTH_COLOURS[int(m[3:]) % 6], x="step",
                               label=lambda m: f"{m[3:]}-gram LM")
                else:
                    part = gs[gs.measure == what]
                    draw_lines(ax, part, "set", lambda s: SET_COLOURS.get(s, "#444444"), x="step",
                               label=lambda s: s)
                    if what == "reordering" and part.reference.notna().any():
                        ax.axhline(float(part.reference.dropna().iloc[0]), color="grey",
                                   ls="--", lw=0.9, label="references")
                for stage, colour in (("kl", "#555555"), ("lexical_accuracy", "#2ca02c"),
                                      ("reordering", "#9467bd")):
                    if pd.notna(steps.get(stage, np.nan)):
                        ax.axvline(steps[stage], color=colour, ls=":", lw=1.0)
                ax.set_ylabel(label if j == 0 else "", fontsize="x-small")
                step_axis(ax)
                ax.set_xlim(0, float(g.step.max()))  # every row on the same time axis
                if i == 0:
                    panel_title(ax, name)
                if what in ("kl", "reordering") and j == len(sets) - 1:
                    ax.legend(fontsize="xx-small", loc="best")
        caption = (
            f"F7 ({model}). Per sentence set (columns), over training: the KL divergence from "
            f"the NMT's teacher-forced next-piece distributions to target-side n-gram LMs "
            f"(one line per order), the lexical accuracy of its greedy translations against "
            f"an IBM Model 1 lexicon, their reordering (Kendall-tau distance of the source "
            f"alignment; dashed: the references') and BLEU. Dotted verticals: C5's stages "
            f"(grey: smallest KL to the {c5[0] if c5 else '?'}-gram LM; green, purple: lexical "
            f"accuracy, reordering from {f'{c5[1]:g}' if c5 else '?'} of their final value on). "
            f"Voita et al. (2021) expect the three in this order.")
        yield make_figure(slug("f7_nmt_stages", model), fig, f"F7 {model}", caption, axes,
                          inner_y=False)
