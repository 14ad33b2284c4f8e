"""The ordered list of figure functions (:data:`FIGURES`), the notes on figures that could not
be drawn, and :func:`draw_all`, which draws groups of figures in parallel processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from analysis.figures.commit import fig_commit, fig_tickets
from analysis.figures.common import Figure, use_tables
from analysis.figures.compression import fig_compression, fig_pruning
from analysis.figures.concentration import fig_concentration, fig_function_content
from analysis.figures.convergence import fig_convergence
from analysis.figures.families import fig_family, fig_tagger
from analysis.figures.layer_matrix import fig_layer_matrix
from analysis.figures.nmt import fig_nmt_stages
from analysis.figures.per_tag import fig_per_tag
from analysis.figures.sanity import fig_cka_vs_svcca, fig_sanity_tokens, fig_seeds, fig_sensitivity
from analysis.settings import PlotSettings
from analysis.tables import registry as T
from analysis.workers import process_pool

FIGURES: list[Callable[[Mapping[str, pd.DataFrame], PlotSettings], Iterator[Figure]]] = [
    fig_layer_matrix, fig_convergence, fig_family, fig_tagger, fig_per_tag,
    fig_concentration, fig_function_content, fig_nmt_stages, fig_compression, fig_pruning,
    fig_commit, fig_tickets,
    fig_sanity_tokens, fig_seeds, fig_cka_vs_svcca, fig_sensitivity,
]


def skipped_notes(tables: Mapping[str, pd.DataFrame]) -> list[str]:
    """Figures that could not be drawn from these tables, and why."""
    notes = []
    if tables.get(T.SEEDS) is None or tables[T.SEEDS].empty:
        notes.append("S2 (seed-to-seed similarity of final models) needs several seeds: run "
                     "`python -m pipeline -m seed=1,2,3 ...`, then `stages=[aggregate] "
                     "aggregate.seeds=[1,2,3]`.")
    for name, what in ((T.FAMILY, "F3"), (T.TAGGER, "F4"), (T.PER_TAG, "F5"),
                       (T.CONCENTRATION, "F6")):
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


_TABLES: Mapping[str, pd.DataFrame] = {}  # the drawing process's tables and settings (_init)
_SETTINGS: PlotSettings | None = None


def _init(tables: Mapping[str, pd.DataFrame], ps: PlotSettings) -> None:
    global _TABLES, _SETTINGS
    _TABLES, _SETTINGS = tables, ps
    use_tables(tables)  # metric_label's default
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

