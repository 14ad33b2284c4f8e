"""What every figure shares: fixed colours and labels, the panel, grid, legend and title helpers,
and :class:`Figure`.

Colours are fixed per layer depth, per tag, per tag family and per metric, so they mean the
same thing in every figure. Panels get fixed margins and limits instead of a layout engine or
shared axes (both make matplotlib measure every sibling's tick labels on each draw).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from analysis.tables import registry as T  # noqa: E402

TAG_ORDER = ["NOUN", "VERB", "ADJ", "ADV", "PRON", "DET", "ADP", "CONJ", "PRT", "NUM", ".", "X",
             "</s>"]
FAMILY_COLOURS = {"all": "#222222", "pos": "#1f77b4", "semtag": "#2ca02c", "topic": "#d62728",
                  "random": "#999999"}
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


_TABLES: Mapping[str, pd.DataFrame] = {}  # the drawing process's tables (see use_tables)


def use_tables(tables: Mapping[str, pd.DataFrame]) -> None:
    """The tables :func:`metric_label` reads its settings from when given none (set in each
    drawing process, before its figures are drawn)."""
    global _TABLES
    _TABLES = tables


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
    """A metric's label (the metric registry's) with the settings it was computed with:
    99%-SVCCA names its variance and rule ("SVCCA (99% of Σs²)"), fixed-k SVCCA its k."""
    from analysis import comparisons  # the metric registry: torch, loaded when labels are drawn

    tables = _TABLES if tables is None else tables
    variance = setting_text(tables, "variance")
    return comparisons.metric_label(metric, float(variance) if variance != "?" else None,
                                    setting_text(tables, "variance_rule"))


def panel_title(ax: plt.Axes, text: str, fontsize: str = "x-small") -> None:
    """A panel title at a fixed height (matplotlib re-places automatic titles on every draw,
    measuring tick labels)."""
    ax.set_title(text, fontsize=fontsize, y=1.0)


def similarity_panel(ax: plt.Axes, title: str, ylabel: str, first: bool) -> None:
    """A panel on the common similarity scale [0, 1]; the y label in the first column only."""
    ax.set_ylim(-0.02, 1.05)
    panel_title(ax, title)
    ax.set_ylabel(ylabel if first else "")


def setting_text(tables: Mapping[str, pd.DataFrame], key: str, default: str = "?") -> str:
    """A setting of the analysis (the settings table holds JSON values), lists comma-joined."""
    s = tables.get(T.SETTINGS)
    if s is None or s.empty or key not in set(s.key):
        return default
    raw = str(s.loc[s.key == key, "value"].iloc[0])
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def present_metrics(table: pd.DataFrame, wanted: Sequence[str] | None) -> list[str]:
    """Metrics of ``wanted`` (default, or "all" among them: every one) that the table holds,
    in a fixed order."""
    from analysis.comparisons import display_key

    have = set(table.metric.unique()) if len(table) else set()
    every = sorted(have, key=display_key)
    order = list(wanted) if wanted and "all" not in wanted else every
    return [m for m in order if m in have]


def seed_mean(t: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """``value``'s mean over seeds per key, with the pooled table's interval (ci_low,
    ci_high: the aggregate's, over seeds) where it has one."""
    values = [value] + [c for c in ("ci_low", "ci_high") if c in t]
    return t.groupby(keys, as_index=False, dropna=False)[values].mean()


def step_axis(ax: plt.Axes) -> None:
    """Training step on a symlog axis (linear below 1, so step 0 is shown); plain tick labels
    and no minor ticks (cheaper to draw than mathtext powers of ten)."""
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("training step (symlog)")


def draw_lines(ax: plt.Axes, df: pd.DataFrame, hue: str, colour: Callable[[object], str],
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


def baseline_lines(ax: plt.Axes, df: pd.DataFrame, hue: str, colour: Callable[[object], str],
                   x: str = "step_a") -> bool:
    """Shuffled-pairing chance level as a dotted line through the steps where it was computed."""
    if "baseline" not in df or df.baseline.isna().all():
        return False
    for key, g in df[df.baseline.notna()].groupby(hue):
        g = g.sort_values(x)
        ax.plot(g[x], g.baseline, color=colour(key), ls=":", lw=1.0, marker="x", ms=3,
                alpha=0.7)
    return True


def panel_grid(n_rows: int, n_cols: int, w: float = 2.4, h: float = 1.8, legend: bool = False,
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


def stack_name(model: str, side: str) -> str:
    extra = SIDE_LABELS.get(side, side)
    return f"{model} {extra}".strip()


def slug(*parts: str) -> str:
    return "_".join(str(p).replace("/", "-").replace(" ", "-") for p in parts if p)


def token_range(df: pd.DataFrame) -> str:
    n = df.n_tokens.dropna().unique() if "n_tokens" in df else []
    if len(n) == 0:
        return "?"
    return f"{int(min(n))}" if len(n) == 1 else f"{int(min(n))}–{int(max(n))}"


def depth_order(d: pd.DataFrame, layer: str = "layer_a", depth: str = "depth_a"):
    """Layers in depth order and a layer -> colour function."""
    order = d.sort_values(depth)[layer].unique()
    dp = dict(zip(d[layer], d[depth], strict=False))
    return order, (lambda k: depth_colour(dp[k]))


def tag_order(tags) -> list:
    """Tags in the fixed POS order, others (genres) after them by name."""
    tags = set(tags)
    return [x for x in TAG_ORDER if x in tags] + sorted(tags - set(TAG_ORDER), key=str)


# What to look for in each figure, one line, first in its caption (by the title's code)
LOOK_FOR = {
    "F1": "the diagonal brightening from the bottom layers up over the checkpoints (C1).",
    "F2": "lower layers' curves making most of their rise earlier than higher ones (C1).",
    "F3": "the POS curve making most of its change before the topic curve does (C2).",
    "F4": "recurrent layers rising towards the taggers and the embedding falling (C3); the "
          "POS tagger's curves making most of their change before the topic tagger's (C2b).",
    "F5": "which tags' curves reach the final representation first.",
    "F6": "function-word tags above content-word tags in gradient concentration.",
    "F6b": "the function minus content difference above zero in every frequency bin (C4).",
    "F7": "the dotted verticals in C5's order: the translations' n-gram LM-score peak (grey) "
          "before lexical accuracy (green) before reordering (purple) has made its change.",
    "F8": "k* well below the width and below the random control's at the last checkpoint "
          "(C6); k* falling over the second half of training (C6b).",
    "F9": "the magnitude curves staying under the tolerance to higher sparsities than the "
          "random ones, and s* rising over training (C6c).",
    "F10": "the barrier falling below the threshold early (C7), every layer's convergence "
           "after the stable point (C9), and where the rewound ticket matches (C8).",
    "F11": "the late-rewound IMP curve under the tolerance at >= 50% sparsity, the random and "
           "re-initialised controls above it (C8).",
    "S1": "how far similarity of unrelated data sits above zero at each token count: the "
          "floor every other figure's values sit on.",
    "S2": "another seed's final model above the model's own initialisation (learned, not "
          "memorised noise).",
    "S3": "whether CKA and the CCA metrics rank the same checkpoints alike.",
    "S4": "invariant metrics flat under their transformation, and falling as principal "
          "components are removed.",
}


def make_figure(name: str, fig: plt.Figure, title: str, caption: str, axes=None,
                inner_y: bool = True, legend: bool = False, legend_title: str | None = None
                ) -> Figure:
    """The finished :class:`Figure`: with ``legend``, the entries of the first row's last panel
    as the figure legend (:func:`_legend`), then the title and tick labels (:func:`_finish`)."""
    if legend:
        _legend(fig, axes[0, -1], title=legend_title)
    look = LOOK_FOR.get(title.split()[0])
    caption = f"Look for: {look}\n{caption}" if look else caption
    return Figure(name, _finish(fig, title, axes, inner_y=inner_y), caption)


def stack_figure(code: str, stem: str, model: str, probe: str, side: str, fig: plt.Figure,
                 caption: str, axes, **kw) -> Figure:
    """:func:`make_figure` of one model's stack on one probe: file ``stem_model_probe[_side]``,
    title "code stack — probe" (``side=""``: the model as a whole)."""
    return make_figure(slug(stem, model, probe, side), fig,
                       f"{code} {stack_name(model, side)} — {probe}", caption, axes, **kw)


def metric_row(t: pd.DataFrame, metrics: Sequence[str], **grid):
    """One panel per metric in a row, with room for a figure legend: the figure, its axes and,
    per panel, (column, axes, metric, the metric's rows of ``t``)."""
    fig, axes = panel_grid(1, len(metrics), legend=True, **grid)
    return fig, axes, [(j, axes[0, j], m, t[t.metric == m]) for j, m in enumerate(metrics)]
