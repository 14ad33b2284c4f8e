"""F1: layer × layer similarity matrices at fractions of training against the final model."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.figures.common import (
    Figure,
    metric_label,
    panel_grid,
    panel_title,
    present_metrics,
    setting_text,
    stack_figure,
    stack_name,
    token_range,
)
from analysis.settings import PlotSettings
from analysis.tables import registry as T


def _heatmap(ax: plt.Axes, mat: pd.DataFrame, annotate: bool):
    """A [0, 1] matrix with the first row at the bottom (Raghu et al. Fig. 4 layout)."""
    im = ax.imshow(mat.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis", origin="lower",
                   aspect="equal")
    ax.set_xticks(range(mat.shape[1]), mat.columns, rotation=90, fontsize="x-small")
    ax.set_yticks(range(mat.shape[0]), mat.index, fontsize="x-small")
    ax.grid(False)
    if annotate:
        for (i, j), v in np.ndenumerate(mat.to_numpy(dtype=float)):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=5,
                        color="black" if v > 0.6 else "white")
    return im


def fig_layer_matrix(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """F1: layer × layer similarity at ~0/35/75/100% of training vs the final model."""
    t = tables.get(T.LAYER_MATRIX, pd.DataFrame())
    if t.empty:
        return
    for (model, probe, side), g in t.groupby(["model", "probe", "side"], sort=True):
        metrics = present_metrics(g, ps.matrix_metrics)
        fracs = sorted(g.fraction_target.unique())
        layers = g.sort_values("depth_a").layer_a.unique().tolist()
        fig, axes = panel_grid(len(metrics), len(fracs), w=1.9, h=1.9, legend=True)
        for i, metric in enumerate(metrics):
            for j, frac in enumerate(fracs):
                ax = axes[i, j]
                cell = g[(g.metric == metric) & (g.fraction_target == frac)]
                mat = cell.pivot_table(index="layer_a", columns="layer_b", values="value")
                im = _heatmap(ax, mat.reindex(index=layers, columns=layers), len(layers) <= 5)
                step = int(cell.step_a.iloc[0]) if len(cell) else -1
                panel_title(ax, f"{frac:.0%} trained (step {step})")
                ax.set_xlabel("layer (end of training)", fontsize="x-small")
                ax.set_ylabel(f"{metric_label(metric)}\nlayer (during training)",
                              fontsize="x-small")
            fig.colorbar(im, ax=axes[i, :].tolist(), fraction=0.05, pad=0.02)
        name = stack_name(model, side)
        caption = (f"F1 ({name}, {probe}). Each pane is a layers × layers matrix: similarity "
                   f"between layer i at the checkpoint nearest the given fraction of training "
                   f"(y) and layer j at the final checkpoint (x), on {token_range(g)} probe "
                   f"tokens; rows are metrics (SVCCA keeps the directions holding "
                   f"{setting_text(tables, 'variance')} of the variance by rule "
                   f"'{setting_text(tables, 'variance_rule')}'). Expected (Raghu et al. 2017): the "
                   f"diagonal fills bottom-up over training.")
        yield stack_figure("F1", "f1_layers", model, probe, side, fig, caption, axes)
