"""F10 and F11: when each model commits (C7-C9). F10 puts on one time axis the barrier between
two copies trained on from each rewind point, the point from which the model is stable, when a
rewound lottery ticket matches, when each layer converges and (NMT) C5's stage steps. F11 is
quality against sparsity for iterative magnitude pruning rewound to each point and its
controls."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.figures.common import (
    Figure,
    depth_colour,
    make_figure,
    panel_grid,
    panel_title,
    seed_mean,
    setting_text,
    slug,
    step_axis,
)
from analysis.settings import PlotSettings
from analysis.tables import registry as T

MEASURE_COLOURS = {"valid_loss": "#1f77b4", "bleu": "#d62728"}
EVENT_STYLE = {"stable": ("#000000", "s", "stable"), "ticket": ("#2ca02c", "*", "ticket matches"),
               "lm_peak": ("#7f7f7f", "v", "C5: LM-score peak"),
               "lexical": ("#17becf", "v", "C5: lexical"),
               "reordering": ("#9467bd", "v", "C5: reordering")}
TICKET_STYLE = {("imp", "init"): ("#1f77b4", "-", "o", "IMP rewound to W_0"),
                ("imp", "late"): ("#d62728", "-", "o", "IMP rewound late"),
                ("random", "late"): ("#7f7f7f", "", "x", "random pruning (late)"),
                ("reinit", "late"): ("#ff7f0e", "", "^", "ticket re-initialised")}


def _barrier_panel(ax, stability: pd.DataFrame, threshold: float) -> None:
    for measure, g in seed_mean(stability, ["measure", "step"], "relative_barrier").groupby(
            "measure", sort=True):
        g = g.sort_values("step")
        colour = MEASURE_COLOURS.get(measure, "#000000")
        ax.plot(g.step, g.relative_barrier, color=colour, marker="o", ms=3, lw=1.2,
                label=f"barrier: {measure}")
        if "ci_low" in g and g.ci_low.notna().any():
            ax.fill_between(g.step, g.ci_low, g.ci_high, color=colour, alpha=0.2, lw=0)
    if np.isfinite(threshold):
        ax.axhline(threshold, color="black", ls=":", lw=0.9, label="stable below")
    ax.set_ylabel("barrier / mean of the ends", fontsize="x-small")


def _events_panel(ax, events: pd.DataFrame) -> list[str]:
    """Each layer's convergence step on its own row (depth-coloured), the model's events on
    the rows below; returns the row labels, top to bottom."""
    layers = events[events.event == "layer"].assign(
        stack=lambda d: d.label.str.rsplit("/", n=1).str[0]).groupby(
        ["stack", "depth", "label"], as_index=False).step.mean()
    layers = layers.sort_values(["stack", "depth"]).reset_index(drop=True)
    labels = list(layers.label)
    for i, r in layers.iterrows():
        ax.plot([r.step], [i], marker="o", ms=4, ls="",
                color=depth_colour(r.depth / max(1.0, layers.depth.max())))
    others = events[events.event != "layer"].groupby("event", as_index=False).step.mean()
    for j, r in enumerate(others.itertuples(), start=len(labels)):
        colour, marker, name = EVENT_STYLE.get(r.event, ("#000000", "o", r.event))
        if np.isfinite(r.step):
            ax.axvline(r.step, color=colour, lw=0.8, ls="--")
            ax.plot([r.step], [j], marker=marker, ms=6, ls="", color=colour, label=name)
        labels.append(name if np.isfinite(r.step) else f"{name}: never")
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize="xx-small")
    ax.set_ylim(len(labels) - 0.5, -0.5)
    return labels


def fig_commit(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """F10 per model with a stability unit: the relative barrier against the rewind step
    (with the threshold), and below it on the same step axis when each layer converges, when
    the model becomes stable, when a rewound ticket matches and (NMT) C5's stages."""
    stability = tables.get(T.STABILITY, pd.DataFrame())
    if stability.empty:
        return
    events = tables.get(T.COMMIT, pd.DataFrame())
    threshold = float(stability.threshold.iloc[0])
    share = setting_text(tables, "claims.convergence_threshold", "0.9")
    for model, g in stability.groupby("model", sort=True):
        e = events[events.model == model] if len(events) else events
        n_rows = len(e.label.unique()) + len(e.event.unique()) if len(e) else 2
        height = 2.6 + 0.17 * n_rows
        fig, (top, bottom) = plt.subplots(
            2, 1, figsize=(8.0, height),
            gridspec_kw={"height_ratios": [1.8, max(1.0, 0.17 * n_rows)]})
        fig.subplots_adjust(left=0.24, right=0.76, hspace=0.25, top=1 - 0.6 / height,
                            bottom=0.55 / height)  # inches: the title, the step axis
        _barrier_panel(top, g, threshold)
        panel_title(top, "barrier between two copies trained on from each rewind point")
        if len(e):
            _events_panel(bottom, e)
        last = max(float(g.step.max()), float(e.step.max()) if len(e) and e.step.notna().any()
                   else 1.0)
        for ax in (top, bottom):
            step_axis(ax)
            ax.set_xlim(0, last * 1.15)
        panel_title(bottom, f"layers' convergence ({share} of their change) and events")
        caption = (
            f"F10 ({model}). Top: for each rewind point k (x), the largest rise of each measure "
            f"on the line between the model's last weights and those of a copy trained on from "
            f"W_k with another data order, over the mean of the two ends (Frankle et al. 2020's "
            f"instability; the ends' half-difference included); dotted: the stable threshold "
            f"{threshold:g} (validation loss decides). Bottom, on the same steps: when each "
            f"layer's similarity to its final state keeps {share} of its change (C9's metric, "
            f"per probe/stack/layer), the first stable rewind point (C7), the earliest rewind "
            f"point whose IMP ticket at the first round >= 50% sparse matches the dense model "
            f"(C8), and for a translation model C5's stage steps. Frankle et al. found "
            f"ResNet-20 stable at 3% of training.")
        yield make_figure(slug("f10_commit", model), fig, f"F10 {model}", caption,
                          np.array([[top], [bottom]]), inner_y=False, legend=True)


def fig_tickets(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """F11 per model with a tickets unit: the relative change of the validation loss (and
    BLEU) against sparsity for IMP at each rewind point, random pruning and the re-initialised
    ticket."""
    tickets = tables.get(T.TICKETS, pd.DataFrame())
    if tickets.empty:
        return
    tolerance = float(setting_text(tables, "claims.c8.tolerance", "nan"))
    for model, g in tickets[tickets.method != "dense"].groupby("model", sort=True):
        measures = sorted(g.measure.unique(), key=lambda m: (m != "valid_loss", m))
        fig, axes = panel_grid(1, len(measures), w=3.0, h=2.2, legend=True, wsp=0.6)
        for ax, measure in zip(axes[0], measures, strict=True):
            m = g[g.measure == measure]
            for (method, rewind), c in seed_mean(m, ["method", "rewind", "round", "sparsity"],
                                             "relative_change").groupby(["method", "rewind"]):
                colour, ls, marker, label = TICKET_STYLE.get(
                    (method, rewind), ("#000000", "-", "o", f"{method} {rewind}"))
                c = c.sort_values("sparsity")
                ax.plot(c.sparsity, c.relative_change, color=colour, ls=ls or "none",
                        marker=marker, ms=4, lw=1.2, label=label)
            if np.isfinite(tolerance):
                ax.axhline(tolerance, color="black", ls=":", lw=0.9)
            ax.axhline(0, color="black", lw=0.5)
            ax.set_xlabel("share of pruned weights")
            ax.set_ylabel(f"relative change of {measure}\n(positive = worse)", fontsize="x-small")
            panel_title(ax, measure)
        caption = (
            f"F11 ({model}). Each ticket's relative change from the dense model after "
            f"training to the end of the schedule, against its sparsity: iterative magnitude "
            f"pruning (20% of the remaining weights a round) rewound to the initialisation and "
            f"to the first stable rewind point, random pruning at the ticket's sparsity per "
            f"tensor from the same W_k, and the ticket's mask on a fresh initialisation; "
            f"dotted: C8's tolerance {tolerance:g}. Yu et al. (2020) found a 90%-sparse LSTM LM "
            f"and a 67%-sparse Transformer within 0.3 BLEU.")
        yield make_figure(slug("f11_tickets", model), fig, f"F11 {model}", caption, axes,
                          inner_y=False, legend=True, legend_title="ticket")
