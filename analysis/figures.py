"""Figures of the learning-dynamics study, drawn from the analysis tables alone.

Every function takes the dict of tables written by the analyze stage (analysis/dynamics.py;
optionally with ``ci_low``/``ci_high`` columns from scripts/aggregate.py, drawn as bands) and
yields :class:`Figure` objects with a caption. No model, array or representation is loaded
here, so every figure can be redrawn in seconds. Colours are fixed per layer depth, per tag,
per tag family and per metric, so they mean the same thing in every figure.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from analysis.pools import process_pool  # noqa: E402
from analysis.settings import PlotSettings  # noqa: E402

log = logging.getLogger(__name__)

TAG_ORDER = ["NOUN", "VERB", "ADJ", "ADV", "PRON", "DET", "ADP", "CONJ", "PRT", "NUM", ".", "X",
             "</s>"]
FAMILY_COLOURS = {"all": "#222222", "pos": "#1f77b4", "semtag": "#2ca02c", "topic": "#d62728"}
METRIC_ORDER = ["svcca", "svcca_k20", "svcca_k50", "pwcca", "cka", "cka_debiased",
                "procrustes", "mutual_knn", "rsa"]  # others follow, sorted
BASE_LABELS = {"svcca": "SVCCA", "pwcca": "PWCCA", "cka": "linear CKA",
               "cka_debiased": "debiased CKA", "procrustes": "Procrustes",
               "procrustes_angular": "Procrustes angle (distance)", "mutual_knn": "mutual k-NN",
               "rsa": "RSA (Spearman)"}
SIDE_LABELS = {"lm": "", "source": "encoder", "target": "decoder"}
DEPTH_COLOURS = [matplotlib.colors.to_hex(c) for c in plt.cm.viridis(np.linspace(0, 0.88, 6))]
_TAG_COLOURS = dict(zip(TAG_ORDER, sns.color_palette("tab20", len(TAG_ORDER)).as_hex(),
                        strict=True))


@dataclass
class Figure:
    """One drawn figure: file stem, the matplotlib figure and its caption."""

    name: str
    fig: plt.Figure
    caption: str


# ---------------------------------------------------------------------------- helpers


def tag_colour(tag: str) -> str:
    """A fixed colour per POS tag; other tags (genres) get a stable colour from their name."""
    if tag in _TAG_COLOURS:
        return _TAG_COLOURS[tag]
    palette = sns.color_palette("husl", 16).as_hex()
    return palette[sum(map(ord, str(tag))) % len(palette)]


def depth_colour(depth: float) -> str:
    return DEPTH_COLOURS[int(depth) % len(DEPTH_COLOURS)]


def metric_label(metric: str, tables: Mapping[str, pd.DataFrame] | None = None) -> str:
    """A metric's label from the settings it was computed with: 99%-SVCCA names its variance
    and rule ("SVCCA (99% of Σs²)"), fixed-k SVCCA its k."""
    tables = _TABLES if tables is None else tables
    if metric == "svcca":
        rule = {"s2": "Σs²", "s": "Σs"}.get(_setting(tables, "variance_rule"), "?")
        variance = _setting(tables, "variance")
        share = f"{float(variance):.0%}" if variance != "?" else "?"
        return f"SVCCA ({share} of {rule})"
    if metric.startswith("svcca_k") and metric[7:].isdigit():
        return f"SVCCA k={metric[7:]}"
    return BASE_LABELS.get(metric, metric)


def _title(ax: plt.Axes, text: str, fontsize: str = "x-small") -> None:
    """A panel title at a fixed height (matplotlib re-places automatic titles on every draw,
    measuring tick labels)."""
    ax.set_title(text, fontsize=fontsize, y=1.0)


def _similarity_panel(ax: plt.Axes, title: str, ylabel: str, first: bool) -> None:
    """A panel on the common similarity scale [0, 1]; the y label in the first column only."""
    ax.set_ylim(-0.02, 1.05)
    _title(ax, title)
    ax.set_ylabel(ylabel if first else "")


def _setting(tables: Mapping[str, pd.DataFrame], key: str, default: str = "?") -> str:
    """A setting of the analysis (the settings table holds JSON values), lists comma-joined."""
    s = tables.get("settings")
    if s is None or s.empty or key not in set(s.key):
        return default
    raw = str(s.loc[s.key == key, "value"].iloc[0])
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def _present(table: pd.DataFrame, wanted: Sequence[str] | None) -> list[str]:
    """Metrics of ``wanted`` (default: all) that the table holds, in a fixed order."""
    have = set(table.metric.unique()) if len(table) else set()
    order = list(wanted) if wanted else [m for m in METRIC_ORDER if m in have] + sorted(
        have - set(METRIC_ORDER))
    return [m for m in order if m in have]


def _step_axis(ax: plt.Axes) -> None:
    """Training step on a symlog axis (linear below 1, so step 0 is shown); plain tick labels
    and no minor ticks (cheaper to draw than mathtext powers of ten)."""
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("training step (symlog)")


def _lines(ax: plt.Axes, df: pd.DataFrame, hue: str, colour: Callable[[object], str],
           x: str = "step_a", y: str = "value", order: Sequence | None = None,
           label: Callable[[object], str] = str, **kw) -> None:
    """One line per ``hue`` value; a band where the table has ci_low/ci_high (several seeds)."""
    groups = dict(list(df.groupby(hue, sort=False)))
    keys = order if order is not None else sorted(groups, key=str)
    for key in keys:
        if key not in groups:
            continue
        g = groups[key].sort_values(x)
        c = colour(key)
        ax.plot(g[x], g[y], color=c, label=label(key), marker="o", ms=2.5, lw=1.3, **kw)
        if "ci_low" in g and g.ci_low.notna().any():
            ax.fill_between(g[x], g.ci_low, g.ci_high, color=c, alpha=0.2, lw=0)


def _baseline(ax: plt.Axes, df: pd.DataFrame, hue: str, colour: Callable[[object], str],
              x: str = "step_a") -> bool:
    """Shuffled-pairing chance level as a dotted line through the steps where it was computed."""
    if "baseline" not in df or df.baseline.isna().all():
        return False
    for key, g in df[df.baseline.notna()].groupby(hue):
        g = g.sort_values(x)
        ax.plot(g[x], g.baseline, color=colour(key), ls=":", lw=1.0, marker="x", ms=3,
                alpha=0.7)
    return True


def _grid(n_rows: int, n_cols: int, w: float = 2.4, h: float = 1.8, legend: bool = False,
          hsp: float = 0.5, wsp: float = 0.35):
    """A grid of panels with fixed margins (in inches). No layout engine and no shared axes
    (both make matplotlib measure every sibling's tick labels on each draw): panels that
    should match get the same limits, and :func:`_finish` hides inner tick labels.
    ``legend`` reserves room on the right for a figure legend."""
    left, right, bottom, top = 0.8, 1.7 if legend else 0.2, 0.55, 0.55
    width = left + n_cols * w + (n_cols - 1) * wsp + right
    height = bottom + n_rows * h + (n_rows - 1) * hsp + top
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                        top=1 - top / height, wspace=wsp / w, hspace=hsp / h)
    return fig, axes


def _legend(fig: plt.Figure, ax: plt.Axes, title: str | None = None) -> None:
    """The panel's legend entries as one figure legend in the reserved right margin."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, title=title, loc="center right", frameon=False,
                   fontsize="x-small", title_fontsize="x-small")


def _finish(fig: plt.Figure, title: str, axes=None, inner_y: bool = True) -> plt.Figure:
    """Figure title; with ``axes``, x tick labels only on the bottom row and (``inner_y``) y
    tick labels only in the first column, for panels drawn on matching limits."""
    fig.suptitle(title, fontsize="medium")
    if axes is not None:
        n_rows, n_cols = axes.shape
        for (i, j), ax in np.ndenumerate(axes):
            if i < n_rows - 1:
                ax.tick_params(labelbottom=False)
                ax.set_xlabel("")
            if inner_y and j > 0:
                ax.tick_params(labelleft=False)
                ax.set_ylabel("")
    return fig


def _stack_name(model: str, side: str) -> str:
    extra = SIDE_LABELS.get(side, side)
    return f"{model} {extra}".strip()


def _slug(*parts: str) -> str:
    return "_".join(str(p).replace("/", "-").replace(" ", "-") for p in parts if p)


def _n_tokens(df: pd.DataFrame) -> str:
    n = df.n_tokens.dropna().unique() if "n_tokens" in df else []
    if len(n) == 0:
        return "?"
    return f"{int(min(n))}" if len(n) == 1 else f"{int(min(n))}–{int(max(n))}"


# ---------------------------------------------------------------------------- F1


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
    t = tables.get("layer_matrix", pd.DataFrame())
    if t.empty:
        return
    for (model, probe, side), g in t.groupby(["model", "probe", "side"], sort=True):
        metrics = _present(g, ps.matrix_metrics)
        fracs = sorted(g.fraction_target.unique())
        layers = g.sort_values("depth_a").layer_a.unique().tolist()
        fig, axes = _grid(len(metrics), len(fracs), w=1.9, h=1.9, legend=True)
        for i, metric in enumerate(metrics):
            for j, frac in enumerate(fracs):
                ax = axes[i, j]
                cell = g[(g.metric == metric) & (g.fraction_target == frac)]
                mat = cell.pivot_table(index="layer_a", columns="layer_b", values="value")
                im = _heatmap(ax, mat.reindex(index=layers, columns=layers), len(layers) <= 5)
                step = int(cell.step_a.iloc[0]) if len(cell) else -1
                _title(ax, f"{frac:.0%} trained (step {step})")
                ax.set_xlabel("layer (end of training)", fontsize="x-small")
                ax.set_ylabel(f"{metric_label(metric)}\nlayer (during training)",
                              fontsize="x-small")
            fig.colorbar(im, ax=axes[i, :].tolist(), fraction=0.05, pad=0.02)
        name = _stack_name(model, side)
        caption = (f"F1 ({name}, {probe}). Each pane is a layers × layers matrix: similarity "
                   f"between layer i at the checkpoint nearest the given fraction of training "
                   f"(y) and layer j at the final checkpoint (x), on {_n_tokens(g)} probe "
                   f"tokens; rows are metrics (SVCCA keeps the directions holding "
                   f"{_setting(tables, 'variance')} of the variance by rule "
                   f"'{_setting(tables, 'variance_rule')}'). Expected (Raghu et al. 2017): the "
                   f"diagonal fills bottom-up over training.")
        yield Figure(_slug("f1_layers", model, probe, side),
                     _finish(fig, f"F1 {name} — {probe}", axes), caption)


# ---------------------------------------------------------------------------- F2, k


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


def _threshold_line(ax: plt.Axes, tables: Mapping[str, pd.DataFrame]) -> None:
    thr = _setting(tables, "claims.convergence_threshold", "")
    if thr:
        ax.axhline(float(thr), color="grey", lw=0.8, ls="--")


def _depths(d: pd.DataFrame, layer: str = "layer_a", depth: str = "depth_a"):
    """Layers in depth order and a layer -> colour function."""
    order = d.sort_values(depth)[layer].unique()
    dp = dict(zip(d[layer], d[depth], strict=False))
    return order, (lambda k: depth_colour(dp[k]))


def fig_convergence(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """F2: each layer vs its own final state over training, per probe, model and metric; the
    last column is k (directions holding 99% of the variance), which moves 99%-SVCCA."""
    t = tables.get("convergence", pd.DataFrame())
    kdim = tables.get("intrinsic_dim", pd.DataFrame())
    seeds = tables.get("seeds", pd.DataFrame())
    if t.empty:
        return
    for probe, g in t.groupby("probe", sort=True):
        stacks = list(g.groupby(["model", "side"], sort=True).groups)
        metrics = _present(g, ps.metrics)
        with_k = len(kdim) > 0
        fig, axes = _grid(len(stacks), len(metrics) + with_k, hsp=0.8, wsp=0.5)
        for i, (model, side) in enumerate(stacks):
            for j, metric in enumerate(metrics):
                ax = axes[i, j]
                d = g[(g.model == model) & (g.side == side) & (g.metric == metric)]
                order, colour = _depths(d)
                _lines(ax, d, "layer_a", colour, order=order)
                _baseline(ax, d, "layer_a", colour)
                _seed_bounds(ax, seeds, model, probe, side, metric, colour)
                _threshold_line(ax, tables)
                _step_axis(ax)
                _similarity_panel(ax, f"{_stack_name(model, side)}: {metric_label(metric)}",
                                  "similarity to final", j == 0)
            if with_k:
                ax = axes[i, -1]
                d = kdim[(kdim.probe == probe) & (kdim.model == model) & (kdim.side == side)]
                order, colour = _depths(d, "layer", "depth")
                _lines(ax, d, "layer", colour, x="step", y="k", order=order)
                _step_axis(ax)
                ax.set_ylim(bottom=0)
                dim = int(d.dim.max()) if len(d) else 0
                _title(ax, f"k ({_setting(tables, 'variance')} var.), dim {dim}")
            axes[i, -1].legend(*axes[i, 0].get_legend_handles_labels(), fontsize="xx-small",
                               title="layer", title_fontsize="xx-small")
        caption = (f"F2 ({probe}). Similarity of each layer at each checkpoint to the same layer "
                   f"at the final checkpoint ({_n_tokens(g)} tokens); colour = depth (dark = "
                   f"input side). Dotted with crosses: shuffled-token baseline at the same size "
                   f"(computed at the F1 checkpoints); dashed grey: the convergence threshold of "
                   f"claim C1. Last column: k, the number of directions holding "
                   f"{_setting(tables, 'variance')} of the variance (rule "
                   f"'{_setting(tables, 'variance_rule')}'). Expected: lower layers converge "
                   f"first." + (" Flat lines (several seeds): dashed, the ceiling, each final "
                                "layer against the same model trained with another seed (S2); "
                                "dash-dotted, the floor, two random initialisations."
                                if len(seeds) else ""))
        yield Figure(_slug("f2_convergence", probe),
                     _finish(fig, f"F2 convergence — {probe}"), caption)


# ---------------------------------------------------------------------------- F3, F4


def fig_family(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """F3: LM vs its final self on all tokens and restricted to POS / topic families."""
    fam = tables.get("family", pd.DataFrame())
    conv = tables.get("convergence", pd.DataFrame())
    if fam.empty:
        return
    for (model, probe), g in fam.groupby(["model", "probe"], sort=True):
        if g.tag_family.nunique() < 2:  # the figure compares families (POS against topic)
            continue
        metrics = _present(g, ps.per_tag_metrics)
        layers = g.sort_values("depth_a").layer_a.unique()
        whole = conv[(conv.model == model) & (conv.probe == probe)] if len(conv) else conv
        fig, axes = _grid(len(metrics), len(layers), legend=True)
        for i, metric in enumerate(metrics):
            for j, layer in enumerate(layers):
                ax = axes[i, j]
                d = g[(g.metric == metric) & (g.layer_a == layer)]
                if len(whole):
                    w = whole[(whole.metric == metric) & (whole.layer_a == layer)]
                    _lines(ax, w, "tag_family", FAMILY_COLOURS.get, label=lambda k: "all tokens")
                _lines(ax, d, "tag_family", FAMILY_COLOURS.get,
                       label=lambda k: f"{k}-restricted")
                _baseline(ax, d, "tag_family", FAMILY_COLOURS.get)
                _threshold_line(ax, tables)
                _step_axis(ax)
                _similarity_panel(ax, f"{layer}: {metric_label(metric)}", "similarity to final",
                                  j == 0)
        _legend(fig, axes[0, -1])
        n = g.n_tokens / g.n_tags.where(g.n_tags > 0)
        caption = (f"F3 ({model}, {probe}). Similarity to the final LM over training: all tokens "
                   f"(black), and restricted to tag families: each POS tag's / each topic's "
                   f"(genre's) tokens subsampled to N = {int(n.min()) if n.notna().any() else '?'}"
                   f" and compared separately, pooled as a mean weighted by the tag's token "
                   f"count. Dotted: shuffled baselines. Expected (Saphra & Lopez): POS "
                   f"stabilises earlier than topic (claim C2).")
        yield Figure(_slug("f3_family", model, probe),
                     _finish(fig, f"F3 {model} — {probe}", axes), caption)


def fig_tagger(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """F4: each LM layer over training vs the same layer of the final taggers."""
    t = tables.get("tagger", pd.DataFrame())
    if t.empty:
        return
    if "shared_init" not in t:
        t = t.assign(shared_init=False)
    for (model, probe), g in t.groupby(["model", "probe"], sort=True):
        metrics = _present(g, ps.metrics)
        layers = g.sort_values("depth_a").layer_a.unique()
        fam = dict(zip(g.model_b, g.tag_family, strict=False))
        shared = dict(zip(g.model_b, g.shared_init.astype(bool), strict=False))

        def colour(tagger, fam=fam):
            return FAMILY_COLOURS.get(fam[tagger], "#555555")

        fig, axes = _grid(len(layers), len(metrics), legend=True)
        for i, layer in enumerate(layers):
            for j, metric in enumerate(metrics):
                ax = axes[i, j]
                d = g[(g.metric == metric) & (g.layer_a == layer)]
                for own in (True, False):
                    part = d[d.model_b.map(shared) != own]
                    _lines(ax, part, "model_b", colour, ls="-" if own else "--",
                           label=lambda k, own=own, fam=fam: f"{fam[k]} tagger"
                           + ("" if own else " (shared init)"))
                    if own:  # the untrained LM (another seed than the tagger's): the floor
                        first = part[part.step_a == part.step_a.min()]
                        for r in first.itertuples():
                            ax.axhline(r.value, color=colour(r.model_b), ls="-.", lw=0.8)
                _baseline(ax, d, "model_b", colour)
                _step_axis(ax)
                _similarity_panel(ax, f"{layer}: {metric_label(metric)}", "similarity to tagger",
                                  j == 0)
        _legend(fig, axes[0, -1])
        caption = (f"F4 ({model}, {probe}). Similarity of each layer at each checkpoint to the "
                   f"final POS / semantic-tag / topic tagger (an LSTM with lstm_lm_paper's "
                   f"architecture, trained to predict the next word's tag; a layer without a "
                   f"namesake is compared with the tagger's top layer) on the same "
                   f"{_n_tokens(g)} tokens. Solid: taggers with their own initialisation; "
                   f"dash-dotted, flat: the untrained model's similarity to them (the floor: "
                   f"another seed); dotted with crosses: shuffled baselines; dashed: the "
                   f"control taggers started from lstm_lm_paper's exact initial weights, whose "
                   f"early similarity measures that shared initialisation. Expected (Saphra & "
                   f"Lopez 2019): the recurrent layer rises, the embedding falls (claim C3).")
        yield Figure(_slug("f4_tagger", model, probe),
                     _finish(fig, f"F4 {model} — {probe}", axes), caption)


# ---------------------------------------------------------------------------- F5


def _tag_order(tags) -> list:
    tags = set(tags)
    return [x for x in TAG_ORDER if x in tags] + sorted(tags - set(TAG_ORDER), key=str)


def fig_per_tag(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """F5: per-POS-tag similarity to the final model over training (and frequency matched)."""
    t = tables.get("per_tag", pd.DataFrame())
    if t.empty:
        return
    t = t[t.tag_family == "pos"]
    for (model, probe, side), g in t.groupby(["model", "probe", "side"], sort=True):
        metrics = _present(g, ps.per_tag_metrics)[:1]  # one metric: the first configured
        layers = g.sort_values("depth_a").layer_a.unique()
        matched = g.freq_matched.astype(bool)
        variants = [v for v in (False, True) if (matched == v).any()]
        cols = [(m, v) for m in metrics for v in variants]
        fig, axes = _grid(len(cols), len(layers), legend=True)
        for i, (metric, fm) in enumerate(cols):
            for j, layer in enumerate(layers):
                ax = axes[i, j]
                d = g[(g.layer_a == layer) & (g.metric == metric) & (matched == fm)]
                _lines(ax, d, "tag", tag_colour, order=_tag_order(d.tag))
                if d.baseline.notna().any():
                    b = d.groupby("step_a").baseline.mean().dropna()
                    ax.plot(b.index, b.values, color="grey", ls=":", marker="x", ms=3,
                            label="baseline (mean)")
                _step_axis(ax)
                kind = "freq-matched" if fm else "all frequencies"
                _similarity_panel(ax, f"{layer}: {kind}", f"{metric_label(metric)} to final",
                                  j == 0)
        types = g[~matched].groupby("tag").n_types.first()
        for ax in axes.flat:  # label tags with their word types once, in the figure legend
            for line in ax.get_lines():
                if line.get_label() in types:
                    line.set_label(f"{line.get_label()} ({int(types[line.get_label()])} types)")
        _legend(fig, axes[0, -1], title="tag")
        n = int(g.n_tokens.max())
        column = g.tag_column.iloc[0] if "tag_column" in g else "pos"
        caption = (f"F5 ({_stack_name(model, side)}, {probe}). Per POS tag ('{column}' tags), "
                   f"similarity of each layer to its final state on that tag's tokens only, "
                   f"every tag subsampled to the same N = {n} (tags with fewer tokens are left "
                   f"out); the legend gives the number of word types in each tag's sample, and "
                   f"the step-0 point is the initialisation reference. The frequency-matched row "
                   f"draws the same count from each word-frequency bin for every tag (tags that "
                   f"cannot fill a bin are absent). Grey dotted: mean shuffled baseline.")
        yield Figure(_slug("f5_per_tag", model, probe, side),
                     _finish(fig, f"F5 {_stack_name(model, side)} — {probe}", axes), caption)


# ---------------------------------------------------------------------------- F6


def fig_concentration(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """F6: mean concentration per POS tag over training, activations and gradients."""
    t = tables.get("concentration", pd.DataFrame())
    if t.empty:
        return
    for (model, probe, side), g in t.groupby(["model", "probe", "side"], sort=True):
        quantities = [q for q in ("act", "grad") if q in set(g.quantity)]
        layers = g.sort_values("depth").layer.unique()
        fig, axes = _grid(len(quantities), len(layers), legend=True, wsp=0.6)
        for i, q in enumerate(quantities):
            for j, layer in enumerate(layers):
                ax = axes[i, j]
                d = g[(g.quantity == q) & (g.layer == layer)]
                enough = d[(d.tag != "all") & (d.n_tokens >= ps.min_tag_tokens)]
                _lines(ax, enough.assign(value=enough["mean"]), "tag", tag_colour, x="step",
                       order=_tag_order(enough.tag))
                whole = d[d.tag == "all"].sort_values("step")
                ax.plot(whole.step, whole["mean"], color="black", ls="--", lw=1.2,
                        label="all tokens")
                _step_axis(ax)
                col = d.tag_column.iloc[0] if len(d) else "?"
                _title(ax, f"{layer}: {'activations' if q == 'act' else 'gradients'} ({col})")
                ax.set_ylabel("mean c = ‖x‖₂/‖x‖₁" if j == 0 else "")
        _legend(fig, axes[0, -1], title="tag")
        caption = (f"F6 ({_stack_name(model, side)}, {probe}). Mean concentration c = ‖x‖₂/‖x‖₁ "
                   f"per POS tag over training (tags with ≥ {ps.min_tag_tokens} tokens), for "
                   f"activations grouped by the tag of the token read (input-aligned) and for "
                   f"gradients of each token's own loss grouped by the tag of the token "
                   f"predicted (target-aligned). Higher = fewer units carry the vector.")
        yield Figure(_slug("f6_concentration", model, probe, side),
                     _finish(fig, f"F6 {_stack_name(model, side)} — {probe}", axes, inner_y=False),
                     caption)


def fig_function_content(tables: Mapping[str, pd.DataFrame], ps: PlotSettings
                         ) -> Iterator[Figure]:
    """F6b: frequency-matched function − content concentration difference over training."""
    t = tables.get("function_content", pd.DataFrame())
    if t.empty:
        return
    stacks = list(t.groupby(["model", "probe", "side"], sort=True).groups)
    quantities = [q for q in ("act", "grad") if q in set(t.quantity)]
    fig, axes = _grid(len(quantities), len(stacks), wsp=0.6)
    for i, q in enumerate(quantities):
        for j, (model, probe, side) in enumerate(stacks):
            ax = axes[i, j]
            d = t[(t.quantity == q) & (t.model == model) & (t.probe == probe) & (t.side == side)]
            order, colour = _depths(d, "layer", "depth")
            _lines(ax, d.assign(value=d.difference), "layer", colour, x="step", order=order)
            ax.axhline(0, color="grey", lw=0.8)
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
            _step_axis(ax)
            _title(ax, f"{_stack_name(model, side)}, {probe}:\n"
                         f"{'activations' if q == 'act' else 'gradients'}", fontsize="xx-small")
            ax.set_ylabel("c(function) − c(content)" if j == 0 else "")
            ax.legend(fontsize="xx-small")
    bins = int(t.freq_bins.iloc[0]) if "freq_bins" in t else "?"
    caption = (f"F6b. Difference of mean concentration between function words "
               f"({_setting(tables, 'function_tags')}) and content words "
               f"({_setting(tables, 'content_tags')}) within {bins} word-frequency bins "
               f"(weighted mean of per-bin differences), with its stratified-bootstrap 95% CI as "
               f"a band; one line per layer. Expected (Saphra & Lopez 2019): gradients > 0 "
               f"(claim C4).")
    yield Figure("f6b_function_content",
                 _finish(fig, "F6b function vs content words", axes, inner_y=False), caption)


# ---------------------------------------------------------------------------- NMT stages


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
        yield Figure(_slug("f7_nmt_stages", model), _finish(fig, f"F7 (partial) {model}"),
                     caption)


# ---------------------------------------------------------------------------- sanity


def fig_sanity_tokens(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """S1: similarity against token count, random Gaussian data and init vs final."""
    t = tables.get("sanity_tokens", pd.DataFrame())
    if t.empty:
        return
    metrics = _present(t, ps.metrics)
    fig, axes = _grid(1, len(metrics), legend=True)
    for j, metric in enumerate(metrics):
        ax = axes[0, j]
        d = t[t.metric == metric]
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
        _similarity_panel(ax, metric_label(metric), "similarity", j == 0)
    _legend(fig, axes[0, -1])
    model = t[t.source == "init_vs_final"].model.unique()
    caption = (f"S1. Similarity against the number of tokens for two independent Gaussian "
               f"representations (true similarity 0) and for each layer at initialisation vs "
               f"the final checkpoint ({', '.join(model) or 'no model'}; dotted: shuffled "
               f"baseline). CCA-type values fall as N grows: their bias at small N is why every "
               f"comparison here reports a baseline at the same size.")
    yield Figure("s1_token_count", _finish(fig, "S1 similarity vs token count", axes), caption)


def fig_seeds(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """S2: each layer of a final model vs the same model trained with another seed."""
    t = tables.get("seeds", pd.DataFrame())
    if t.empty:
        return
    metrics = _present(t, ps.metrics)
    fig, axes = _grid(1, len(metrics), legend=True)
    keys = sorted({(m, p) for m, p in zip(t.model, t.probe, strict=True)})
    palette = sns.color_palette("tab10" if len(keys) <= 10 else "tab20", len(keys)).as_hex()
    colours = dict(zip(keys, palette, strict=True))
    for j, metric in enumerate(metrics):
        ax = axes[0, j]
        for (model, probe), g in t[t.metric == metric].groupby(["model", "probe"]):
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
        _similarity_panel(ax, metric_label(metric), "seed vs seed similarity", j == 0)
    _legend(fig, axes[0, -1])
    pairs = t[["seed_a", "seed_b"]].drop_duplicates()
    caption = (f"S2. Each layer of a final model against the same layer of the same model "
               f"trained with another seed (solid: mean over {len(pairs)} seed pairs, band: "
               f"their range; dotted: the two random initialisations; NMT layers count on "
               f"from the encoder into the decoder). Same tokens on both "
               f"sides. Similarity well below 1 at the end bounds how close two training runs "
               f"get: convergence curves are relative to that.")
    yield Figure("s2_seed_to_seed", _finish(fig, "S2 seed-to-seed similarity", axes), caption)


def fig_cka_vs_svcca(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """S3: agreement of CKA with the CCA-family metrics on the same comparisons."""
    t = tables.get("convergence", pd.DataFrame())
    if t.empty or "cka" not in set(t.metric):
        return
    t = t[t.step_a != t.step_b]
    keys = ["model", "probe", "side", "layer_a", "step_a", "seed"]
    wide = t.pivot_table(index=keys, columns="metric", values="value").reset_index()
    others = [m for m in _present(t, None) if m != "cka"]  # every metric of the table
    if not others:
        return
    fig, axes = _grid(1, len(others), w=2.2, h=2.2, legend=True)
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
        _title(ax, f"Spearman ρ = {rho:.2f}")
        ax.set_xlabel(metric_label(m))
        ax.set_ylabel("linear CKA" if j == 0 else "")
        notes.append(f"{metric_label(m)} ρ = {rho:.2f}")
    _legend(fig, axes[0, -1])
    caption = (f"S3. Linear CKA against the CCA-family metrics on the same convergence "
               f"comparisons (each layer at each non-final checkpoint vs its final state). "
               f"Rank agreement: {'; '.join(notes)}. Bottom-up conclusions should not depend on "
               f"the metric.")
    yield Figure("s3_cka_vs_svcca", _finish(fig, "S3 CKA vs CCA-family", axes), caption)


def fig_sensitivity(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """S4: each final layer against itself with its top-j principal components removed."""
    t = tables.get("sensitivity", pd.DataFrame())
    if t.empty:
        return
    t = t[t.test == "pcs_removed"]
    summary = tables.get("sensitivity_summary", pd.DataFrame())
    verdicts = {} if summary.empty else {
        (r.test, r.metric): r.verdict for r in summary.itertuples()}
    metrics = _present(t, None)
    fig, axes = _grid(1, len(metrics), legend=True)
    models = sorted(t.model.unique())
    colours = dict(zip(models, sns.color_palette("tab10", len(models)).as_hex(), strict=False))
    for j, metric in enumerate(metrics):
        ax = axes[0, j]
        d = t[t.metric == metric]
        labelled = set()
        for (model, _, _, _), g in d.groupby(["model", "probe", "side", "layer"]):
            g = g.sort_values("j")
            ax.plot(g.j, g.value, color=colours[model], lw=0.8, alpha=0.7,
                    label=None if model in labelled else model)
            labelled.add(model)
        ax.set_xlabel("top principal components removed")
        monotone = verdicts.get(("pcs_removed", metric), "?")
        rotation = verdicts.get(("rotation_scaling", metric), "?")
        _title(ax, f"{metric_label(metric)}\nmonotone: {monotone}; rotation: {rotation}",
               fontsize="xx-small")
        ax.set_ylabel("similarity to the intact layer" if j == 0 else "")
    _legend(fig, axes[0, -1])
    caption = ("S4 (Ding et al. 2021). Each final layer against itself with its top-j "
               "principal components removed from one side, one line per layer; a metric that "
               "is sensitive to what carries the variance falls monotonically in j (verdict in "
               "each title, with whether a random rotation plus isotropic scaling left the "
               "metrics that claim that invariance unchanged). The table 'sensitivity_summary' "
               "adds, with several seeds, whether final-vs-final across seeds exceeds "
               "initial-vs-final.")
    yield Figure("s4_sensitivity", _finish(fig, "S4 sensitivity and specificity", axes,
                                           inner_y=False), caption)


FIGURES: list[Callable[[Mapping[str, pd.DataFrame], PlotSettings], Iterator[Figure]]] = [
    fig_layer_matrix, fig_convergence, fig_family, fig_tagger, fig_per_tag,
    fig_concentration, fig_function_content, fig_nmt_stages, fig_sanity_tokens, fig_seeds,
    fig_cka_vs_svcca, fig_sensitivity,
]


def skipped_notes(tables: Mapping[str, pd.DataFrame]) -> list[str]:
    """Figures that could not be drawn from these tables, and why."""
    notes = []
    if tables.get("seeds") is None or tables["seeds"].empty:
        notes.append("S2 (seed-to-seed similarity of final models) needs several seeds: run "
                     "`python -m pipeline -m seed=1,2,3 ...`, then `stages=[aggregate] "
                     "aggregate.seeds=[1,2,3]`.")
    for name, what in (("family", "F3"), ("tagger", "F4"), ("per_tag", "F5"),
                       ("concentration", "F6")):
        if tables.get(name) is None or tables[name].empty:
            notes.append(f"{what}: no '{name}' rows in the tables, figure not drawn.")
    return notes


def _draw(make: Callable, out_dir: Path) -> list[dict]:
    """Draw and save one group of figures (one FIGURES function) from the worker's tables."""
    drawn = []
    for f in make(_TABLES, _SETTINGS):
        files = []
        for fmt in _SETTINGS.formats:
            path = out_dir / f"{f.name}.{fmt}"
            f.fig.savefig(path, dpi=_SETTINGS.dpi)
            files.append(path.name)
        plt.close(f.fig)
        drawn.append({"name": f.name, "caption": f.caption, "files": files})
    return drawn


_TABLES: Mapping[str, pd.DataFrame] = {}
_SETTINGS = PlotSettings()


def _init(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> None:
    global _TABLES, _SETTINGS
    _TABLES, _SETTINGS = tables, ps
    sns.set_theme(context="paper", style="whitegrid", font_scale=0.9)


def draw_all(tables: Mapping[str, pd.DataFrame], out_dir: Path, ps: PlotSettings,
             progress: Callable[[str], None] | None = None) -> list[dict]:
    """Draw every figure into ``out_dir`` in each format; return name, caption and files.
    Rendering dominates, so groups of figures are drawn in ``ps.workers`` processes."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # plain object columns: boolean filtering of arrow-backed strings is slow here
    tables = {name: t.astype({c: object for c in t.columns if pd.api.types.is_string_dtype(t[c])})
              for name, t in tables.items()}
    workers = max(1, min(int(ps.workers), len(FIGURES)))
    if workers == 1:
        _init(tables, ps)
        groups = (_draw(make, out_dir) for make in FIGURES)
        return [f for group in groups for f in _report(group, progress)]
    # forked: the children only draw (no torch, no threads)
    with process_pool(workers, "fork", initializer=_init, initargs=(tables, ps)) as pool:
        groups = pool.map(_draw, FIGURES, [out_dir] * len(FIGURES))
        return [f for group in groups for f in _report(group, progress)]


def _report(group: list[dict], progress: Callable[[str], None] | None) -> list[dict]:
    for f in group:
        if progress:
            progress(f["name"])
    return group


__all__ = ["FIGURES", "Figure", "PlotSettings", "depth_colour", "draw_all", "skipped_notes",
           "tag_colour"]
