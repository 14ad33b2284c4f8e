"""The report: report.md and a self-contained report.html (figures embedded as base64 PNG).

Both are written from the analysis tables and the drawn figures alone: the settings (models,
data sizes, variance rule, k, per-tag N, thresholds), the claims with their numbers, and every
figure with its caption.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.claims import CLAIMS, seeds_sentence
from analysis.claims.seeds import PRIMARY
from analysis.tables import registry as T
from analysis.tables.rows import not_computed


def _cell(v) -> str:
    if isinstance(v, float | np.floating):
        if not np.isfinite(v):
            return ""
        return f"{v:.4g}"
    return str(v)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (floats to 4 significant digits, NaN blank)."""
    if df.empty:
        return "_(none)_"
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(_cell(v).replace("|", "\\|") for v in row) + " |"
            for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def sizes_summary(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Tokens and layers per (model, probe, side), and the per-tag N used there."""
    s = tables.get(T.SIZES, pd.DataFrame())
    if s.empty:
        return s
    out = (s.groupby(["model", "probe", "side"], sort=False)
           .agg(tokens=("n_tokens", "first"), used=("n_used", "first"),
                layers=("layer", lambda x: ", ".join(x)), dims=("dim", "max"),
                checkpoints=("n_steps", "first"))
           .reset_index())
    pt = tables.get(T.PER_TAG, pd.DataFrame())
    if len(pt):
        n = pt[~pt.freq_matched.astype(bool) & (pt.tag_family == "pos")].groupby(
            ["model", "probe", "side"]).agg(per_tag_N=("n_tokens", "max"),
                                            tags=("tag", "nunique")).reset_index()
        out = out.merge(n, on=["model", "probe", "side"], how="left")
    return out


def _figure_for(prefix: str, figures: Sequence[Mapping]) -> str:
    """Links to the drawn figures showing a claim (their name starts with ``prefix``), as
    markdown ``[name](#name)``: each figure's heading (and, in HTML, its id) is its name."""
    names = [f["name"] for f in figures if prefix and f["name"].startswith(prefix)]
    links = [f"[{n}](#{n})" for n in names[:3]]
    return ", ".join(links) + (f" (+{len(names) - 3})" if len(names) > 3 else "")


def _interval(df: pd.DataFrame) -> list[str]:
    return [f"{e:.3g} [{lo:.3g}, {hi:.3g}]" if np.isfinite(lo) else
            (f"{e:.3g}" if np.isfinite(e) else "")
            for e, lo, hi in zip(df.effect, df.ci_low, df.ci_high, strict=True)]


def answer_blocks(tables: Mapping[str, pd.DataFrame], figures: Sequence[Mapping]):
    """The report's opening: how many seeds the verdicts rest on, the verdict per claim (its
    primary reading tested across seeds) with the effect and the figures that show it; then
    the other readings and metrics as agreement, and whether each model learned and
    finished."""
    a = tables.get(T.ANSWER, pd.DataFrame())
    if a.empty:
        return [("p", "No claim could be evaluated.")]
    a = a.assign(effect_ci=_interval(a))
    primary = a[a.role == PRIMARY].assign(
        figures=lambda d: [_figure_for(f, figures) for f in d.figure])
    agreement = a[a.role != PRIMARY]
    models = tables.get(T.MODELS, pd.DataFrame())
    blocks = [
        ("p", f"**{seeds_sentence(a)}**"),
        ("p", "Do the papers' findings reproduce here? Each claim has one primary reading (a "
              "metric and the smallest effect of interest, fixed in the config before any "
              "run). The seed is the unit of replication: each seed's units (probes, layers, "
              "taggers) are averaged, and the seed means are tested: a two-sided t-test "
              "against 0 and an equivalence test (TOST within ± the smallest effect), both "
              "Holm-adjusted across the claims. **holds**: significant and the interval at "
              "or above the smallest effect; **reversed**: significant and the interval at or "
              "below its negative; **no effect**: equivalent to 0; **inconclusive**: "
              "otherwise. `p_signflip` is the exact sign-flip test over seeds beside it (no "
              "smaller than `p_signflip_min`)."),
        ("table", primary[[c for c in (
            "claim", "statement", "verdict", "metric", "statistic", "min_effect", "n_seeds",
            "effect_ci", "p_holm", "p_tost_holm", "p_signflip", "p_signflip_min", "reason",
            "agreement", "figures") if c in primary]]),
        ("h3", "Every other reading and metric (agreement, not votes; p not adjusted)"),
        ("table", agreement[[c for c in (
            "claim", "metric", "verdict", "n_seeds", "units", "effect_ci", "p", "p_signflip",
            "p_tost", "statistic") if c in agreement]]),
    ]
    blocks += commit_blocks(tables)
    layers = tables.get(T.LEARNED_LAYERS, pd.DataFrame())
    if len(layers):
        blocks += [("h3", "Has each layer learned and finished? (across seeds)"),
                   ("p", "learned: over seed pairs, the gain of seed-vs-seed similarity from "
                         "the initial to the final models, each minus its shuffled baseline, "
                         "has its bootstrap interval above `learned.margin`; finished: the "
                         "change over the last part of training (1 - sim(late, final), mean "
                         "over seeds) is at most `learned.epsilon` x the seeds' spread "
                         "(1 - sim(final a, final b))."),
                   ("table", layers)]
    if len(models) and "learned" in models:
        # False only: None (NaN once pooled) is a series not evaluated here
        not_learned = models[models.learned.apply(lambda v: v is False or v is np.False_)]
        blocks.append(("p", "All models have learned by the criteria in the settings."
                       if not_learned.empty else
                       "Not learned by the criteria in the settings (read the claims with "
                       "this in mind): " + "; ".join(
                           f"{m}: {why}" for m, why in zip(not_learned.model,
                                                            not_learned.not_learned_because,
                                                            strict=True)) + "."))
    if len(models) and "source" in models:
        blocks += [("h3", "Where each model came from"), ("table", models[[
            c for c in ("model", "kind", "source", "subword") if c in models]])]
    parts = [c for c in ENDPOINT_COLUMNS if c in models]
    if len(models) and "endpoint_lr" in parts:
        blocks += [("h3", "Has each model finished learning? (the endpoint, per part)"),
                   ("p", "Limits from the settings (`learned.*`): the last learning rate at "
                         "most `max_final_lr_share` of its peak; validation loss changing by "
                         "less than `max_loss_change` over the last `late_window` of updates; "
                         "every layer's CKA between the checkpoint nearest `late` and the "
                         "last at least `min_late_cka` (for the taggers, their two extracted "
                         "checkpoints: `extract.reference_checkpoints=endpoint`)."),
                   ("table", models[parts])]
    return blocks


def _share(x: float) -> str:
    return f"{x:.1%}" if np.isfinite(x) else "never"


def commit_sentences(events: pd.DataFrame) -> list[str]:
    """Two sentences over the models of the commit table (means over its seeds): when each
    becomes stable to SGD noise; when its layers converge and whether a rewound ticket
    matches."""
    e = events.groupby(["model", "event", "label"], as_index=False, dropna=False).agg(
        step=("step", "mean"), share=("share", "mean"))
    stable, layers = [], []
    for model, g in e.groupby("model", sort=True):
        at = g[g.event == "stable"]
        share = float(at.share.iloc[0]) if len(at) else np.nan
        stable.append(f"{model} from update {at.step.iloc[0]:g} ({_share(share)} of training)"
                      if np.isfinite(share) else f"{model} at no rewind point of the grid")
        conv = g[g.event == "layer"].dropna(subset=["share"]).sort_values("share")
        ticket = g[g.event == "ticket"]
        t = float(ticket.share.iloc[0]) if len(ticket) else np.nan
        span = (f"its layers converge (C9) between {_share(conv.share.iloc[0])} "
                f"({conv.label.iloc[0]}) and {_share(conv.share.iloc[-1])} "
                f"({conv.label.iloc[-1]}) of training" if len(conv) else
                "its layers' convergence is not measured")
        tickets = ("" if ticket.empty else
                   f", and a rewound ticket at least half sparse matches it from "
                   f"{_share(t)} of training" if np.isfinite(t) else
                   ", and no rewound ticket at least half sparse matches it")
        layers.append(f"for {model}, {span}{tickets}")
    return [f"Stable to SGD noise (two copies trained on with other data orders end in one "
            f"linearly connected basin): {'; '.join(stable)}.",
            f"{'; '.join(layers)[0].upper()}{'; '.join(layers)[1:]}."]


def commit_blocks(tables: Mapping[str, pd.DataFrame]) -> list:
    """The report's "When does each model commit?": two sentences, then the events."""
    events = tables.get(T.COMMIT, pd.DataFrame())
    if events.empty:
        return []
    return [("h3", "When does each model commit?"),
            ("p", " ".join(commit_sentences(events))),
            ("table", events.drop(columns=[c for c in ("ci_low", "ci_high") if c in events]))]


ENDPOINT_COLUMNS = ("model", "epochs", "lr_share", "endpoint_lr", "late_loss_change",
                    "endpoint_loss", "late_step_share", "late_cka_min", "endpoint_cka")


def _sections(tables: Mapping[str, pd.DataFrame], notes: Sequence[str]):
    """(heading, blocks) of the sections after the figures (shown collapsed in HTML); a block
    is ("h3" | "p", text), ("table", DataFrame) or ("list", [text])."""
    claims = tables.get(T.CLAIMS, pd.DataFrame())
    summary = tables.get(T.CLAIMS_SUMMARY, pd.DataFrame())
    settings = tables.get(T.SETTINGS, pd.DataFrame())
    models = tables.get(T.MODELS, pd.DataFrame())
    # one row per model: kind, family, role, seed, training length and final evaluation
    yield "Models", [("table", models.drop(columns=[c for c in ("ci_low", "ci_high")
                                                    if c in models]))]
    yield "Data sizes", [
        ("p", "Tokens per probe side; `used` is the seeded subsample shared by every model and "
              "checkpoint; `per_tag_N` the common N of the per-tag analyses and `tags` how many "
              "tags reached it."),
        ("table", sizes_summary(tables))]
    yield "Claims, unit by unit", [
        ("list", [f"{k}: {v}" for k, v in CLAIMS.items()]),
        ("p", "Units per claim and metric reaching the claim's smallest effect of interest "
              "(PASS), not reaching it (FAIL) and not evaluable (NA): the detail under the "
              "verdicts, not evidence of its own (units of one seed share its training)."),
        ("table", summary),
        ("h3", "Every unit"),
        # the seed column only where the rows come from several seeds (the aggregate's)
        ("table", claims.drop(columns=["seed"]) if "seed" in claims
         and claims.seed.nunique() <= 1 else claims),
    ]
    s4 = tables.get(T.SENSITIVITY_SUMMARY, pd.DataFrame())
    if len(s4):
        yield "S4: sensitivity and specificity of the metrics", [
            ("p", "Per metric and test: `pcs_removed`, similarity falls monotonically as the "
                  "top principal components of one side are removed (every final layer); "
                  "`rotation_scaling`, a random rotation with isotropic scaling leaves it "
                  "unchanged (for the metrics invariant to it by definition); "
                  "`own_init_retention` (several seeds; a diagnostic, not a gate): the "
                  "layers whose final-vs-final similarity across seeds exceeds their "
                  "initial-vs-final, i.e. that keep less of their initialisation than two "
                  "seeds share."),
            ("table", s4)]
    na = not_computed(tables)
    if len(na):
        yield "Not computed", [
            ("p", "Rows whose metric could not be computed (value NA), per table and metric, "
                  "with one example reason; they are left out of the claims."),
            ("table", na)]
    if notes:
        yield "Not drawn", [("list", list(notes))]
    yield "Analysis settings", [
        ("list", [f"`{k}`: {v}" for k, v in zip(settings.key, settings.value, strict=True)]
         if len(settings) else [])]


def _md_blocks(blocks) -> list[str]:
    lines = []
    for kind, content in blocks:
        if kind == "h3":
            lines += [f"### {content}", ""]
        elif kind == "p":
            lines += [content, ""]
        elif kind == "table":
            lines += [markdown_table(content), ""]
        elif kind == "list":
            lines += [f"- {item}" for item in content] + [""]
    return lines


def write_report(out: Path, tables: Mapping[str, pd.DataFrame], figures: Sequence[Mapping],
                 notes: Sequence[str] = (), title: str = "Learning dynamics",
                 figure_dir: str = "figures") -> dict[str, Path]:
    """Write ``out/report.md`` (figures linked) and ``out/report.html`` (figures embedded):
    the answer first (a verdict per claim), then every figure with its caption, then the
    models, data, every claim unit and the settings (collapsed in HTML).

    ``figures``: dicts with name, caption and files (as returned by figures.draw_all), the
    files lying in ``out/figure_dir``.
    """
    out = Path(out)
    answer = answer_blocks(tables, figures)
    sections = list(_sections(tables, notes))
    md = [f"# {title}", "", "## The answer", "", *_md_blocks(answer), "## Figures", ""]
    for f in figures:
        png = next((x for x in f["files"] if x.endswith(".png")), None)
        links = ", ".join(f"[{x.rsplit('.', 1)[-1]}]({figure_dir}/{x})" for x in f["files"])
        md += [f"### {f['name']}", ""]
        if png:
            md += [f"![{f['name']}]({figure_dir}/{png})", ""]
        md += [f"{f['caption'].replace(chr(10), '  ' + chr(10))} ({links})", ""]
    for head, blocks in sections:
        md += [f"## {head}", "", *_md_blocks(blocks)]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md))
    html_path = out / "report.html"
    html_path.write_text(_html(title, answer, sections, figures, out / figure_dir))
    return {"md": md_path, "html": html_path}


_CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}
table{border-collapse:collapse;font-size:0.8em;margin:0.5em 0}
td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}
figure{margin:1.5em 0}figcaption{font-size:0.9em;color:#333}code{background:#f3f3f3}
details{margin:0.5em 0}summary{font-weight:bold;cursor:pointer}
.PASS,.holds{background:#d8f0d8}.FAIL,.reversed{background:#f6d5d5}
.NA,.not-evaluated{background:#eee}.inconclusive{background:#fbefc9}
.no-effect{background:#dde6f3}
#broken{background:#f6d5d5;padding:0.5em}"""
VERDICT_CLASSES = {"PASS": "PASS", "FAIL": "FAIL", "NA": "NA", "holds": "holds",
                   "reversed": "reversed", "no effect": "no-effect",
                   "inconclusive": "inconclusive", "not evaluated": "not-evaluated"}
# marks the page when a figure fails to load (and counts them for a browser test)
_CHECK = """<script>window.addEventListener('load', function () {
  var imgs = document.images, bad = 0;
  for (var i = 0; i < imgs.length; i++) { if (!imgs[i].complete || !imgs[i].naturalWidth) bad++; }
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-broken-images', bad);
  if (bad) { var p = document.createElement('p'); p.id = 'broken';
    p.textContent = bad + ' of ' + imgs.length + ' figures did not load';
    document.body.insertBefore(p, document.body.firstChild); }
});</script>"""


def inline(text: str) -> str:
    """The markdown this report uses inside text (`code`, **bold**, [links](#anchor)) as
    HTML, escaped."""
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\[([^\]]+)\]\((#[^)\s]+)\)", r'<a href="\2">\1</a>', out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)


def _html_table(df: pd.DataFrame) -> str:
    """An HTML table; rows with a verdict are coloured by it."""
    if df.empty:
        return "<p><em>(none)</em></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for row in df.itertuples(index=False):
        cls = next((VERDICT_CLASSES[v] for v in row if isinstance(v, str)
                    and v in VERDICT_CLASSES), "")
        cells = "".join(f"<td>{inline(_cell(v))}</td>" for v in row)
        rows.append(f'<tr class="{cls}">{cells}</tr>')
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _html_blocks(blocks) -> str:
    out = []
    for kind, content in blocks:
        if kind == "h3":
            out.append(f"<h3>{inline(content)}</h3>")
        elif kind == "p":
            out.append(f"<p>{inline(content)}</p>")
        elif kind == "table":
            out.append(_html_table(content))
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in content) + "</ul>")
    return "\n".join(out)


def _html(title: str, answer, sections, figures: Sequence[Mapping], figure_dir: Path) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{_CSS}</style>{_CHECK}</head><body><h1>{html.escape(title)}</h1>",
             f"<h2>The answer</h2>{_html_blocks(answer)}", "<h2>Figures</h2>"]
    for f in figures:
        png = next((x for x in f["files"] if x.endswith(".png")), None)
        img = ""
        if png and (figure_dir / png).is_file():
            data = base64.b64encode((figure_dir / png).read_bytes()).decode("ascii")
            img = f"<img alt='{html.escape(f['name'])}' src='data:image/png;base64,{data}'>"
        parts.append(f"<figure id='{html.escape(f['name'])}'><h3>{html.escape(f['name'])}</h3>"
                     f"{img}<figcaption>{inline(f['caption']).replace(chr(10), '<br>')}"
                     "</figcaption></figure>")
    for head, blocks in sections:
        parts.append(f"<details><summary>{html.escape(head)}</summary>"
                     f"{_html_blocks(blocks)}</details>")
    parts.append("</body></html>")
    return "\n".join(parts)


__all__ = ["answer_blocks", "inline", "markdown_table", "sizes_summary", "write_report"]
