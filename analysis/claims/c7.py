"""C7-C9, when a model commits (issue 38), per unit and seed from the stability, tickets and
convergence tables. Each statistic is positive when its claim holds.

- C7 (Frankle et al. 2020), per model and measure: ``c7.by`` minus the first stable rewind
  point as a share of training (never stable on the grid: 1, the end).
- C8 (Frankle & Carbin 2019; Frankle et al. 2020), per model and measure, at the IMP round
  whose sparsity is the first >= ``c8.sparsity``: min(tolerance - d_IMP, d_random -
  tolerance, d_reinit - tolerance), d a ticket's relative change from the dense model
  (positive = worse); "C8" rewound late, "C8 k0" to the initialisation.
- C9 (ours), per model, probe and stack: min over its layers of (converged step - first
  stable step) / the last step, a layer converged from the first step after which its
  similarity to its final state keeps ``convergence_threshold`` of its change.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from analysis.claims.rows import FAIL, NA, PASS, fmt, row
from analysis.progress import converged_step
from analysis.settings import Claims
from analysis.tables import registry as T
from analysis.tables.rows import ALL
from analysis.tables.stability import LOSS, first_stable

IMP, RANDOM, REINIT, INIT, LATE = "imp", "random", "reinit", "init", "late"


def _verdict(value: float, threshold: float) -> str:
    return NA if not np.isfinite(value) else PASS if value >= threshold else FAIL


def claim_c7(stability: pd.DataFrame, cs: Claims) -> list[dict]:
    """C7 per model and measure: c7.by - the first stable share (1 if never stable)."""
    rows = []
    threshold = cs.primary["C7"].min_effect
    for r in first_stable(stability).itertuples():
        share = r.stable_share if np.isfinite(r.stable_share) else 1.0
        value = cs.c7.by - share
        detail = (f"stable from update {r.stable_step:g} ({share:.3g} of training)"
                  if np.isfinite(r.stable_share) else "never stable on the rewind grid")
        rows.append(row("C7", dict(model=r.model, seed=r.seed), "model", r.measure,
                        f"{cs.c7.by:g} - first stable share", value, threshold,
                        _verdict(value, threshold), detail, n=1))
    return rows


def claim_c8(tickets: pd.DataFrame, cs: Claims) -> list[dict]:
    """C8 (late rewinding) and "C8 k0" per model and measure at the first IMP round at least
    ``c8.sparsity`` sparse; NA where that round or a control is missing."""
    rows = []
    threshold = cs.primary["C8"].min_effect
    tol = cs.c8.tolerance
    for (model, seed, measure), g in tickets.groupby(["model", "seed", "measure"], sort=True):
        r = dict(model=model, seed=seed)
        late = g[(g.rewind == LATE)]
        imp = late[late.method == IMP].sort_values("round")
        deep = imp[imp.sparsity >= cs.c8.sparsity]
        for claim, rewind in (("C8", LATE), ("C8 k0", INIT)):
            statistic = "min(tol - d_IMP, d_random - tol, d_reinit - tol)"
            if deep.empty:
                rows.append(row(claim, r, "model", measure, statistic, np.nan, threshold, NA,
                                f"no IMP round reached sparsity {cs.c8.sparsity:g}"))
                continue
            rnd = int(deep["round"].iloc[0])
            at = g[g["round"] == rnd]
            ticket = at[(at.method == IMP) & (at.rewind == rewind)]
            if rewind == INIT and ticket.empty and (imp.rewind_step == 0).all():
                ticket = at[(at.method == IMP) & (at.rewind == LATE)]  # stable from W_0
            controls = {m: at[at.method == m].relative_change for m in (RANDOM, REINIT)}
            if ticket.empty or any(c.empty for c in controls.values()):
                rows.append(row(claim, r, "model", measure, statistic, np.nan, threshold, NA,
                                f"round {rnd}: the ticket or a control is missing"))
                continue
            d = float(ticket.relative_change.iloc[0])
            dr, dz = (float(controls[m].iloc[0]) for m in (RANDOM, REINIT))
            value = min(tol - d, dr - tol, dz - tol)
            rows.append(row(claim, r, "model", measure, statistic, value, threshold,
                            _verdict(value, threshold),
                            f"round {rnd} ({float(ticket.sparsity.iloc[0]):.3f} sparse, "
                            f"rewound to update {int(ticket.rewind_step.iloc[0])}): ticket "
                            f"{d:+.4f}, random {dr:+.4f}, re-initialised {dz:+.4f} "
                            f"(tolerance {tol:g})", n=1))
    return rows


def claim_c9(convergence: pd.DataFrame, stability: pd.DataFrame, cs: Claims) -> list[dict]:
    """C9 per model, probe, stack and metric: min over layers of (converged step - first
    stable step) / last step, the stable step by the validation loss's rule."""
    rows = []
    threshold = cs.primary["C9"].min_effect
    stable = first_stable(stability)
    stable = stable[stable.measure == LOSS].set_index(["model", "seed"])
    t = convergence[convergence.tag == ALL] if "tag" in convergence else convergence
    keys = ["model", "seed", "probe", "side", "metric"]
    for key, g in t.groupby(keys, sort=True):
        r = dict(zip(keys, key, strict=True))
        if (r["model"], r["seed"]) not in stable.index:
            continue
        at = float(stable.loc[(r["model"], r["seed"]), "stable_step"])
        last = float(g.step_a.max())
        steps = {name: converged_step(lg.step_a, lg.value, cs.convergence_threshold)
                 for (_, name), lg in g.groupby(["depth_a", "layer_a"], sort=True)}
        order = ", ".join(f"{n}@{fmt(s)}" for n, s in steps.items())
        if not np.isfinite(at):
            at = last  # never stable on the grid: stable only at the end
        value = min((s - at) / last for s in steps.values())
        rows.append(row("C9", r, f"stack={r['side']}", r["metric"],
                        "min over layers (converged step - stable step) / steps", value,
                        threshold, _verdict(value, threshold),
                        f"stable at {at:g}; converged: {order}", n=len(steps)))
    return rows


def _ticket_step(tickets: pd.DataFrame, cs: Claims) -> float:
    """The earliest rewind step whose IMP ticket, at the first round at least ``c8.sparsity``
    sparse, is within ``c8.tolerance`` of the dense model's validation loss (NaN: none)."""
    imp = tickets[(tickets.method == IMP) & (tickets.measure == LOSS)
                  & (tickets.sparsity >= cs.c8.sparsity)]
    if imp.empty:
        return np.nan
    at = imp[imp["round"] == imp["round"].min()]
    matching = at[at.relative_change <= cs.c8.tolerance]
    return float(matching.rewind_step.min()) if len(matching) else np.nan


def commit_events(tables: Mapping[str, pd.DataFrame], cs: Claims) -> pd.DataFrame:
    """F10's time axis, per model and seed: when it becomes stable (``stable``), when a
    rewound ticket first matches (``ticket``), when each layer converges (``layer``: C9's
    metric, every probe and stack) and, for a translation model, C5's stage steps
    (``lm_peak``, ``lexical``, ``reordering`` on ``c5.bleu_set``); step and share of
    training, NaN where an event does not happen."""
    from analysis.claims.c5 import stage_steps, translation_start

    stability = tables.get(T.STABILITY)
    if stability is None or stability.empty:
        return pd.DataFrame()
    rows = []
    stable = first_stable(stability)
    stable = stable[stable.measure == LOSS]
    last = stable.set_index(["model", "seed"]).last_step.to_dict()
    for r in stable.itertuples():
        rows.append(dict(model=r.model, seed=r.seed, event="stable", label="", depth=np.nan,
                         step=r.stable_step))
    tickets = tables.get(T.TICKETS, pd.DataFrame())
    for (model, seed), g in (tickets.groupby(["model", "seed"]) if len(tickets) else []):
        rows.append(dict(model=model, seed=seed, event="ticket", label="", depth=np.nan,
                         step=_ticket_step(g, cs)))
    conv = tables.get(T.CONVERGENCE, pd.DataFrame())
    if len(conv):
        conv = conv[(conv.tag == ALL) & (conv.metric == cs.primary["C9"].metric)
                    & conv.model.isin(stability.model.unique())]
        for (model, seed, probe, side, depth, layer), g in conv.groupby(
                ["model", "seed", "probe", "side", "depth_a", "layer_a"], sort=True):
            rows.append(dict(model=model, seed=seed, event="layer",
                             label=f"{probe}/{side}/{layer}", depth=depth,
                             step=converged_step(g.step_a, g.value, cs.convergence_threshold)))
    stages = tables.get(T.NMT_STAGES, pd.DataFrame())
    if len(stages):
        stages = stages[stages.model.isin(stability.model.unique())
                        & (stages.set == cs.c5.bleu_set)]
        for (model, seed), unit in stages.groupby(["model", "seed"], sort=True):
            bleu = unit[unit.measure == "bleu"]
            steps = stage_steps(unit, translation_start(bleu, cs.c5.bleu_threshold), cs.c5)
            rows += [dict(model=model, seed=seed, event=event, label="", depth=np.nan,
                          step=steps[event]) for event in ("lm_peak", "lexical", "reordering")]
    out = pd.DataFrame(rows)
    out["share"] = [s / last.get((m, seed), np.nan) for m, seed, s in
                    zip(out.model, out.seed, out.step, strict=True)]
    return out


def claims_c7(tables: Mapping[str, pd.DataFrame], cs: Claims) -> list[dict]:
    """C7, C8 and C9; none without a stability table."""
    stability = tables.get(T.STABILITY)
    if stability is None or stability.empty:
        return []
    rows = claim_c7(stability, cs)
    tickets = tables.get(T.TICKETS)
    if tickets is not None and len(tickets):
        rows += claim_c8(tickets, cs)
    convergence = tables.get(T.CONVERGENCE)
    if convergence is not None and len(convergence):
        rows += claim_c9(convergence, stability, cs)
    return rows
