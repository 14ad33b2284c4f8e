"""F7: the stages of NMT training (C5) as Voita et al. (2021) measured them: the n-gram LM score
of the translations, teacher-forced token accuracy and the fuzzy reordering score, with BLEU,
on one progress axis per sentence set, then each measure in its own units."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd

from analysis.claims.c5 import REORDERING, stage_steps, translation_start
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

STAGE_COLOURS = {"lm": "#7f7f7f", "lexical": "#2ca02c", "reordering": "#9467bd",
                 "bleu": "#1f77b4", "start": "#000000"}
ROWS = ["progress", "lm", "token_accuracy", REORDERING, "kl", "bleu"]
LABELS = {"progress": "progress (0..1)", "lm": "LM score, nats/piece",
          "token_accuracy": "token accuracy", REORDERING: "fuzzy reordering score",
          "kl": "KL(NMT ‖ n-gram LM)", "bleu": "BLEU (greedy)"}


def _c5(tables: Mapping[str, pd.DataFrame]) -> SimpleNamespace | None:
    """C5's settings as the tables' settings recorded them (None when they are not recorded:
    then no stage is marked)."""
    keys = ("share", "bleu_threshold", "bleu_set", "lm_orders", "lexical", "kl_order")
    raw = {k: setting_text(tables, f"claims.c5.{k}", "") for k in keys}
    if not all(raw.values()):
        return None
    return SimpleNamespace(share=float(raw["share"]), bleu_threshold=float(raw["bleu_threshold"]),
                           bleu_set=raw["bleu_set"], lexical=raw["lexical"],
                           lm_orders=[int(k) for k in raw["lm_orders"].split(",")],
                           kl_order=int(raw["kl_order"]))


def _series(g: pd.DataFrame, measure: str) -> pd.DataFrame:
    """A measure's mean over seeds per step (columns step, value, reference)."""
    part = g[g.measure == measure]
    return part.groupby("step", as_index=False)[["value", "reference"]].mean() \
        .sort_values("step")


def _scaled(s: pd.DataFrame, start: float, peak: bool) -> pd.DataFrame:
    """``peak``: min-max normalised over every step (the peak at 1); else the progress from
    ``start`` on, (v - v_start) / (v_last - v_start)."""
    v = s.value.to_numpy(dtype=float)
    if peak:
        if not np.isfinite(v).any() or np.nanmax(v) == np.nanmin(v):
            return s.assign(value=np.nan)
        return s.assign(value=(v - np.nanmin(v)) / (np.nanmax(v) - np.nanmin(v)))
    after = s[s.step >= start] if np.isfinite(start) else s.iloc[:0]
    if len(after) < 2:
        return after.assign(value=np.nan)
    a = after.value.to_numpy(dtype=float)
    change = a[-1] - a[0]
    return after.assign(value=(a - a[0]) / change if change else np.nan)


def _progress_panel(ax, g: pd.DataFrame, c5, start: float, top_lm: int | None) -> None:
    lexical = c5.lexical if c5 else "token_accuracy"
    lines = [("lm", f"lm_{top_lm}" if top_lm else "", True,
              f"{top_lm}-gram LM score" if top_lm else ""),
             ("lexical", lexical, False, lexical.replace("_", " ")),
             ("reordering", REORDERING, False, "fuzzy reordering"), ("bleu", "bleu", True, "BLEU")]
    for colour, measure, peak, label in lines:
        s = _series(g, measure)
        if measure and len(s):
            s = _scaled(s, start, peak)
            ax.plot(s.step, s.value, color=STAGE_COLOURS[colour], marker="o", ms=2.5, lw=1.3,
                    label=label)
    ax.set_ylim(-0.1, 1.15)


def _measure_panel(ax, g: pd.DataFrame, what: str, buckets: list[str]) -> None:
    if what in ("lm", "kl"):
        prefix = "lm_" if what == "lm" else "kl_"
        ks = sorted(int(m[len(prefix):]) for m in g.measure.unique()
                    if m.startswith(prefix) and m[len(prefix):].isdigit())
        for k in ks:
            s = _series(g, f"{prefix}{k}")
            colour = DEPTH_COLOURS[k % len(DEPTH_COLOURS)]
            ax.plot(s.step, s.value, color=colour, marker="o", ms=2, lw=1.2, label=f"{k}-gram")
            if what == "lm" and s.reference.notna().any():
                ax.axhline(float(s.reference.dropna().iloc[0]), color=colour, ls="--", lw=0.9)
    elif what == "token_accuracy":
        part = g[g.measure.isin(["token_accuracy", *[f"token_accuracy[{b}]" for b in buckets]])]
        part = part.groupby(["measure", "step"], as_index=False).value.mean()
        shade = {f"token_accuracy[{b}]": matplotlib.colors.to_hex(c) for b, c in zip(
            buckets, matplotlib.colormaps["viridis"](np.linspace(0.2, 0.9, len(buckets))),
            strict=True)}
        draw_lines(ax, part, "measure", lambda m: shade.get(m, "#000000"), x="step",
                   order=["token_accuracy", *shade],
                   label=lambda m: "all" if m == "token_accuracy" else f"ranks {m[15:-1]}")
    else:
        s = _series(g, what)
        ax.plot(s.step, s.value, color=STAGE_COLOURS.get(
            "reordering" if what == REORDERING else "bleu"), marker="o", ms=2.5, lw=1.3)
        if s.reference.notna().any():
            ax.axhline(float(s.reference.dropna().iloc[0]), color="grey", ls="--", lw=0.9,
                       label="references")


def fig_nmt_stages(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> Iterator[Figure]:
    """F7 per translation model: one column per sentence set; the first row puts the three
    measures and BLEU on one progress axis with C5's stage steps as verticals, the rows below
    show the LM scores per order (the references' dashed), token accuracy per frequency bucket,
    the fuzzy reordering score (the references' dashed), the KL to the n-gram LMs (Chang &
    Bergen's reading) and BLEU."""
    curves = tables.get(T.NMT_STAGES, pd.DataFrame())
    if curves.empty:
        return
    c5 = _c5(tables)
    for model, g in curves.groupby("model", sort=True):
        sets = sorted(g.set.unique(), key=lambda s: (s != "test2016", s))
        buckets = sorted({m[15:-1] for m in g.measure.unique()
                          if m.startswith("token_accuracy[")},
                         key=lambda b: float(b.lstrip(">").split("-")[0]))
        present = {int(m[3:]) for m in g.measure.unique() if m[:3] == "lm_" and m[3:].isdigit()}
        lm_orders = [k for k in (c5.lm_orders if c5 else sorted(present)) if k in present]
        top_lm = max(lm_orders) if lm_orders else None
        bleu = _series(g[g.set == (c5.bleu_set if c5 else "test2016")], "bleu")
        start = translation_start(bleu, c5.bleu_threshold) if c5 and len(bleu) else np.nan
        fig, axes = panel_grid(len(ROWS), len(sets), w=3.2, h=1.35, hsp=0.35, wsp=0.6)
        for j, name in enumerate(sets):
            gs = g[g.set == name]
            mean = gs.groupby(["step", "measure"], as_index=False)[["value"]].mean()
            steps = stage_steps(mean, start, c5) if c5 else {}
            for i, what in enumerate(ROWS):
                ax = axes[i, j]
                if what == "progress":
                    _progress_panel(ax, gs, c5, start, top_lm)
                else:
                    _measure_panel(ax, gs, what, buckets)
                if what == "bleu" and c5:
                    ax.axhline(c5.bleu_threshold, color="black", ls=":", lw=0.9)
                if np.isfinite(start):
                    ax.axvline(start, color=STAGE_COLOURS["start"], ls="--", lw=0.8)
                for stage, colour in (("lm_peak", "lm"), ("lexical", "lexical"),
                                      ("reordering", "reordering")):
                    if np.isfinite(steps.get(stage, np.nan)):
                        ax.axvline(steps[stage], color=STAGE_COLOURS[colour], ls=":", lw=1.2)
                ax.set_ylabel(LABELS[what] if j == 0 else "", fontsize="x-small")
                step_axis(ax)
                ax.set_xlim(0, float(g.step.max()))  # every row on the same time axis
                if i == 0:
                    panel_title(ax, name)
                if j == len(sets) - 1 and what in ("progress", "lm", "token_accuracy",
                                                   REORDERING):
                    ax.legend(fontsize="xx-small", loc="best")
        share = f"{c5.share:g}" if c5 else "?"
        threshold = f"{c5.bleu_threshold:g} on {c5.bleu_set}" if c5 else "?"
        caption = (
            f"F7 ({model}). Per sentence set (columns), over training. Top row, on one axis: "
            f"the {top_lm or '?'}-gram LM score of the greedy translations and BLEU, each "
            f"min-max normalised over all checkpoints (1 = its peak), and "
            f"{c5.lexical.replace('_', ' ') if c5 else 'token accuracy'} and the fuzzy "
            f"reordering score as progress from the first checkpoint with BLEU {threshold} "
            f"(dashed vertical: the outputs are translations from there) to the last, "
            f"(v - v_start) / (v_last - v_start), so a falling score rises too. Dotted "
            f"verticals: C5's stage steps, the LM-score peak (grey), and where lexical accuracy "
            f"(green) and reordering (purple) have made {share} of their change (isotonic fit). "
            f"Rows below, in their own units: the LM score per n-gram order (mean log-prob per "
            f"piece; dashed: the references'), teacher-forced token accuracy per bucket of "
            f"training-frequency ranks, the fuzzy reordering score of the source-translation "
            f"alignment (aligner: {', '.join(sorted(set(g.get('aligner', pd.Series(['?'])))))}; "
            f"dashed: the references'; lower = less monotone), the teacher-forced KL to the "
            f"n-gram LMs (Chang & Bergen's reading, claim 'C5 KL') and BLEU (dotted: the "
            f"threshold). Voita et al. (2021) expect the LM peak, then lexical translation, "
            f"then reordering.")
        yield make_figure(slug("f7_nmt_stages", model), fig, f"F7 {model}", caption, axes,
                          inner_y=False)
