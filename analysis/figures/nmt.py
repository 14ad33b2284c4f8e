"""F7 (partial): the stages of encoder-decoder training."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pandas as pd

from analysis.figures.common import (
    SIDE_LABELS,
    Figure,
    _figure,
    _grid,
    _lines,
    _slug,
    _step_axis,
    metric_label,
)
from analysis.settings import PlotSettings


def fig_nmt_stages(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """F7 (partial): validation loss of encoder-decoder models next to the convergence of
    their encoder and decoder stacks."""
    conv = tables.get("convergence", pd.DataFrame())
    ckpt = tables.get("checkpoints", pd.DataFrame())
    if conv.empty:
        return
    sides = conv.groupby("model").side.agg(set)
    two_stacks = [m for m, s in sides.items() if {"source", "target"} <= s]
    metric = ps.primary_metric if ps.primary_metric in set(conv.metric) else conv.metric.iloc[0]
    for model, g in conv[conv.model.isin(two_stacks) & (conv.metric == metric)].groupby("model"):
        fig, axes = _grid(1, 2, w=3.0, wsp=0.9)
        c = ckpt[ckpt.model == model].sort_values("step") if len(ckpt) else ckpt
        if len(c) and "valid_loss" in c:
            axes[0, 0].plot(c.step, c.valid_loss, marker="o", ms=3, color="black")
        axes[0, 0].set_ylabel("validation loss")
        _step_axis(axes[0, 0])
        stack = g.groupby(["side", "step_a"]).value.mean().reset_index()
        colours = {"source": "#1f77b4", "target": "#ff7f0e"}
        _lines(axes[0, 1], stack, "side", colours.get, label=lambda s: SIDE_LABELS.get(s, s))
        axes[0, 1].set_ylabel(f"mean {metric_label(metric)} to final")
        axes[0, 1].legend(fontsize="x-small")
        _step_axis(axes[0, 1])
        caption = (f"F7, partial ({model}). Validation loss (left) and the mean over layers of "
                   f"each stack's {metric_label(metric)} similarity to its final state (right). "
                   f"Voita et al. (2021) expect target-side language modelling first, then "
                   f"lexical translation, then reordering; the lexical-translation and "
                   f"reordering probes are not implemented, so only the stack timing is shown.")
        yield _figure(_slug("f7_nmt_stages", model), fig, f"F7 (partial) {model}", caption)
