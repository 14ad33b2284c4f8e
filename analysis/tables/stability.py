"""The stability and tickets tables (F10, F11, C7-C9): each rewind point's barrier on the line
between the model's and its child's last weights and whether it is stable (analysis.stability,
``stability.threshold``), each lottery ticket's quality against the dense model's, and how
alike the children's and the tickets' final layers are to the model's own (S2's comparison)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from analysis import compression as C
from analysis import stability as S
from analysis.runs import Probe, discover_runs
from analysis.settings import AnalysisSettings
from analysis.tables.registry import (
    FINAL_SIMILARITY,
    STABILITY,
    STABILITY_PATH,
    TICKETS,
)
from analysis.tables.sanity import layer_pairs

log = logging.getLogger(__name__)
CHILD, TICKET = "child", "ticket"
LOSS = "valid_loss"  # the measure whose barrier decides stability (the stages' validation loss)


def barriers(path: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per model, seed, rewind step and measure: the two ends, the barrier (and the α where it
    is largest), the barrier relative to the mean of the ends, and whether W_k is stable:
    that relative barrier at most ``threshold`` (every measure read alike; the validation
    loss's decides, ``LOSS``)."""
    out = []
    keys = ["model", "seed", "step", "share", "measure", "higher_better"]
    for key, g in path.groupby(keys, sort=True):
        r = dict(zip(keys, key, strict=True))
        value, alpha = S.barrier(g.alpha, g.value, bool(r["higher_better"]))
        own = float(g.value[g.alpha == 0].iloc[0])
        child = float(g.value[g.alpha == 1].iloc[0])
        rel = S.relative(value, (own + child) / 2)
        out.append(dict(r, end_model=own, end_child=child, barrier=value, alpha_max=alpha,
                        relative_barrier=rel, stable=bool(rel <= threshold),
                        threshold=threshold))
    return pd.DataFrame(out)


def first_stable(table: pd.DataFrame) -> pd.DataFrame:
    """Per model, seed and measure: the first stable rewind step and share (NaN: never on
    the grid), and the training's last step."""
    out = []
    for (model, seed, measure), g in table.groupby(["model", "seed", "measure"], sort=True):
        step = S.first_stable(g.step, g.stable)
        last = float(g.step.max() / g.share.max()) if g.share.max() > 0 else float("nan")
        out.append(dict(model=model, seed=seed, measure=measure, stable_step=step,
                        stable_share=step / last if last == last else float("nan"),
                        last_step=last))
    return pd.DataFrame(out)


def _probes(extract_dir: Path, train_dir: Path, label: str, seed: int) -> dict[str, Probe]:
    (run,) = discover_runs({label: extract_dir}, {label: train_dir}, seed)
    return {probe: Probe.open(run, probe) for probe in run.stores}


def final_similarity(others: list[tuple[str, str, Path, str]],
                     train_units: Mapping[str, Path], extract_units: Mapping[str, Path],
                     seed: int, settings: AnalysisSettings) -> pd.DataFrame:
    """Each child's and each ticket's last layers against the model's own last layers, per
    probe, layer and metric (the same tokens: the model's subsample); ``others``: (``CHILD``
    or ``TICKET``, model, unit, the child's or ticket's folder in it), those extracted read."""
    rows = []
    own: dict[str, dict[str, Probe]] = {}
    for kind, model, unit, where in others:
        extract = Path(unit) / where / "extract"
        if model not in extract_units or not (extract / "model.json").is_file():
            continue
        if model not in own:
            own[model] = _probes(extract_units[model], train_units[model], model, seed)
        theirs = _probes(extract, Path(unit) / where, f"{model}/{where}", seed)
        for probe, a in own[model].items():
            if probe in theirs:
                b = theirs[probe]
                rows += [dict(r, seed=seed, other=kind, dir=where) for r in layer_pairs(
                    a, b, [("final", a.final, b.final)], settings, model)]
    return pd.DataFrame(rows)


def stability_tables(stability_units: Mapping[str, Path], tickets_units: Mapping[str, Path],
                     train_units: Mapping[str, Path], extract_units: Mapping[str, Path],
                     seed: int, settings: AnalysisSettings, threshold: float
                     ) -> dict[str, pd.DataFrame]:
    """The path rows and barriers of every stability unit, the tickets' rows with their
    relative change from the dense model, and the final layers' similarity; none without a
    stability unit."""
    paths = [pd.read_parquet(Path(u) / "stability.parquet")
             for _, u in sorted(stability_units.items())]
    if not paths:
        return {}
    path = pd.concat(paths, ignore_index=True).assign(seed=seed)
    out = {STABILITY_PATH: path, STABILITY: barriers(path, threshold)}
    others = [(CHILD, model, u, child) for model, u in sorted(stability_units.items())
              for child in pd.read_csv(Path(u) / "children.csv").child]
    tickets = [pd.read_parquet(Path(u) / "tickets.parquet")
               for _, u in sorted(tickets_units.items())]
    others += [(TICKET, model, tickets_units[model], where) for t in tickets
               for model, where in sorted(set(zip(t.model, t.dir, strict=True)))
               if where]
    if tickets:
        t = pd.concat(tickets, ignore_index=True).assign(seed=seed)
        t["relative_change"] = [C.relative_change(v, d, h) for v, d, h in
                                zip(t.value, t.dense, t.higher_better, strict=True)]
        stable = first_stable(out[STABILITY])
        stable = stable[stable.measure == LOSS].set_index("model").stable_step
        # whether the ticket's rewind point is stable by this analysis's rule
        t["stable"] = [step >= stable.get(m, float("nan")) and method != "dense"
                       for m, step, method in zip(t.model, t.rewind_step, t.method,
                                                  strict=True)]
        out[TICKETS] = t
    similarity = final_similarity(others, train_units, extract_units, seed, settings)
    if len(similarity):
        out[FINAL_SIMILARITY] = similarity
    return out
