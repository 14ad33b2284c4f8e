"""F8 and F9: how much of each layer (projection onto its top-k directions) and of the weights
(one-shot pruning) a model needs over training (C6-C6c), for the models analysed over
training."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import matplotlib
import numpy as np
import pandas as pd

from analysis.compression import OVER_TRAINING, PROJECTION, PRUNING
from analysis.figures.common import (
    Figure,
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

METHOD_COLOURS = {"pca": "#1f77b4", "svcca": "#d62728", "random": "#7f7f7f",
                  "magnitude": "#2ca02c", "k99": "#000000"}


def _line(ax, x, g: pd.DataFrame, y: str, colour: str, transform=lambda v: v, **kw) -> None:
    """A line, and its band over seeds where the pooled table has one."""
    ax.plot(x, transform(g[y]), color=colour, marker="o", ms=2.5, lw=1.2, **kw)
    if "ci_low" in g and g.ci_low.notna().any():
        ax.fill_between(x, transform(g.ci_low), transform(g.ci_high), color=colour, alpha=0.2,
                        lw=0)


def _tolerance(tables: Mapping[str, pd.DataFrame]) -> float:
    return float(setting_text(tables, "compression.tolerance", "nan"))


def _picked(steps: list[int]) -> list[int]:
    """The first, middle and last of the compressed checkpoints."""
    return sorted({steps[0], steps[len(steps) // 2], steps[-1]})


def _curve_panel(ax, g: pd.DataFrame, tolerance: float) -> None:
    for method, m in g.groupby("method", sort=True):
        m = m.sort_values("k")
        _line(ax, m.k, m, "relative_change", METHOD_COLOURS.get(method, "#000000"),
              label=method)
    if np.isfinite(tolerance):
        ax.axhline(tolerance, color="black", ls=":", lw=0.9)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))


def _star_panel(ax, stars: pd.DataFrame, k99: pd.DataFrame) -> None:
    for method, m in stars.groupby("method", sort=True):
        m = m.sort_values("step")
        _line(ax, m.step, m, "star", METHOD_COLOURS.get(method, "#000000"),
              lambda v: 2.0 ** v, label=f"k* {method}")
    if len(k99):
        k99 = k99.sort_values("step")
        ax.plot(k99.step, k99.k, color=METHOD_COLOURS["k99"], ls="--", lw=1.0,
                label="k at 99% variance")
    ax.set_yscale("log", base=2)
    step_axis(ax)


def fig_compression(tables: Mapping[str, pd.DataFrame], ps: PlotSettings
                    ) -> Iterator[Figure]:
    """F8 per model analysed over training: one row per layer; the relative change of the
    primary quality against k at the first, middle and last compressed checkpoints (PCA,
    SVCCA, random directions), then k*(t) beside the 99%-variance k(t) of F2."""
    rows = tables.get(T.COMPRESSION, pd.DataFrame())
    summary = tables.get(T.COMPRESSION_SUMMARY, pd.DataFrame())
    if rows.empty or summary.empty:
        return
    tolerance = _tolerance(tables)
    dims = tables.get(T.INTRINSIC_DIM, pd.DataFrame())
    proj = rows[(rows.compress == PROJECTION) & rows.primary & (rows.role == OVER_TRAINING)]
    for model, g in proj.groupby("model", sort=True):
        curves = seed_mean(g, ["step", "layer", "method", "k", "measure", "fit_probe", "side"],
                       "relative_change")
        layers = list(dict.fromkeys(g.layer))
        steps = _picked(sorted(curves.step.unique()))
        stars = summary[(summary.model == model) & (summary.compress == PROJECTION)]
        stars = seed_mean(stars, ["step", "layer", "method"], "star")
        fig, axes = panel_grid(len(layers), len(steps) + 1, w=2.2, h=1.5, legend=True)
        for i, layer in enumerate(layers):
            lg = curves[curves.layer == layer]
            for j, step in enumerate(steps):
                ax = axes[i, j]
                _curve_panel(ax, lg[lg.step == step], tolerance)
                ax.set_ylabel(f"{layer}\nrelative change" if j == 0 else "", fontsize="x-small")
                if i == 0:
                    panel_title(ax, f"step {step}")
                ax.set_xlabel("k (directions kept)")
            k99 = pd.DataFrame()
            if len(dims):
                probe, side = lg.fit_probe.iloc[0], lg.side.iloc[0]
                d = dims[(dims.model == model) & (dims.layer == layer) & (dims.probe == probe)
                         & (dims.side == side)]
                k99 = d.groupby("step", as_index=False).k.mean() if len(d) else d
            ax = axes[i, -1]
            _star_panel(ax, stars[stars.layer == layer], k99)
            ax.set_ylabel("k", fontsize="x-small")
            if i == 0:
                panel_title(ax, "k* over training")
        measure = g.measure.iloc[0]
        caption = (
            f"F8 ({model}). Rows: layers. First columns: at the first, middle and last "
            f"compressed checkpoints, the relative change of {measure} (positive = worse) when "
            f"the layer's output is replaced by its projection onto k directions fitted on "
            f"{g.fit_probe.iloc[0]} tokens: its own principal directions (PCA), its SVCCA "
            f"directions against the same layer at the last checkpoint, or random ones "
            f"(control); dotted: the tolerance {tolerance:g}. Last column: k* (the fewest "
            f"directions within the tolerance, interpolated in log2 k) over training, with the "
            f"layer's 99%-variance dimension k (F2's k pane, dashed). Raghu et al. (2017) kept "
            f"CIFAR accuracy at 0.35 of five layers' width at the end of training.")
        yield make_figure(slug("f8_compression", model), fig, f"F8 {model}", caption, axes,
                          inner_y=False, legend=True, legend_title="directions")


def fig_pruning(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """F9 per model analysed over training: the relative change of the primary quality against
    the one-shot sparsity at each compressed checkpoint (magnitude solid, random dashed), and
    s*(t)."""
    rows = tables.get(T.COMPRESSION, pd.DataFrame())
    summary = tables.get(T.COMPRESSION_SUMMARY, pd.DataFrame())
    if rows.empty or summary.empty:
        return
    tolerance = _tolerance(tables)
    pruned = rows[(rows.compress == PRUNING) & rows.primary & (rows.role == OVER_TRAINING)]
    for model, g in pruned.groupby("model", sort=True):
        curves = seed_mean(g, ["step", "method", "sparsity"], "relative_change")
        steps = sorted(curves.step.unique())
        shade = dict(zip(steps, matplotlib.colormaps["viridis"](np.linspace(0.1, 0.9,
                                                                            len(steps))),
                         strict=True))
        fig, axes = panel_grid(1, 2, w=3.0, h=2.2, legend=True, wsp=0.7)
        ax = axes[0, 1]  # the last panel: its checkpoints are the figure's legend
        for (step, method), c in curves.groupby(["step", "method"], sort=True):
            zero = {col: [0.0] for col in ("sparsity", "relative_change", "ci_low", "ci_high")
                    if col in c}  # the unpruned model
            c = pd.concat([pd.DataFrame(zero), c.sort_values("sparsity")], ignore_index=True)
            _line(ax, c.sparsity, c, "relative_change", shade[step],
                  ls="-" if method == "magnitude" else "--",
                  label=f"step {step}" if method == "magnitude" else None)
        if np.isfinite(tolerance):
            ax.axhline(tolerance, color="black", ls=":", lw=0.9)
        ax.set_yscale("symlog", linthresh=max(tolerance, 1e-3) if np.isfinite(tolerance)
                      else 0.05)
        ax.set_ylim(bottom=-0.01)
        ax.set_xlabel("share of weights pruned")
        ax.set_ylabel("relative change", fontsize="x-small")
        panel_title(ax, "quality vs sparsity")
        stars = summary[(summary.model == model) & (summary.compress == PRUNING)]
        ax = axes[0, 0]
        for method, m in seed_mean(stars, ["step", "method"], "star").groupby("method"):
            m = m.sort_values("step")
            _line(ax, m.step, m, "star", METHOD_COLOURS.get(method, "#000000"),
                  label=f"s* {method}")
        step_axis(ax)
        ax.set_ylabel("s*", fontsize="x-small")
        panel_title(ax, "s* over training")
        ax.legend(fontsize="xx-small", loc="best")
        caption = (
            f"F9 ({model}). Left: s*, the largest one-shot sparsity whose "
            f"{g.measure.iloc[0]} is within the tolerance (interpolated), over training, for "
            f"global magnitude pruning and the random control. Right: the relative change of "
            f"{g.measure.iloc[0]} (positive = worse; symlog) when the weight matrices are "
            f"pruned one-shot, without retraining, to each sparsity by global magnitude "
            f"(solid) or at random with the same sparsity per matrix (dashed), one colour per "
            f"compressed checkpoint; dotted: the tolerance {tolerance:g}.")
        yield make_figure(slug("f9_pruning", model), fig, f"F9 {model}", caption, axes,
                          inner_y=False, legend=True, legend_title="checkpoint")
