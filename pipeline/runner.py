"""The runner: the requested stages in order, each target under its lock, cached ones
reused (and said to be).

It knows the stages only through the registry and what each declares (pipeline.stages.stage).
A per-model stage (one with a ``unit``) gives each selected model its own cached unit, so
changing one model recomputes that model only. Consecutive per-model stages run as one chain
per model: a model's next stage starts as soon as its previous one is done; `train.parallel`
models run at a time, the costliest first. The other stages are whole: one directory per key.
A lock per result directory makes a second run on the same artifacts wait and reuse the first
one's result.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from pipeline import costs, jobs, store
from pipeline.config import model_specs
from pipeline.plan import Node, Target, explain, plan
from pipeline.stages.registry import REGISTRY
from pipeline.stages.stage import Stage

log = logging.getLogger(__name__)


class MissingInput(RuntimeError):
    """A requested stage reads one that is neither requested nor done for this config."""


def _inputs(nodes: dict[str, Node], stage: Stage, model: str | None = None) -> dict:
    if stage.across_seeds:
        node = nodes[stage.name]
        return {"seeds": {s: {n: ns[n].value() for n in stage.needs}
                          for s, ns in node.seeds.items()}}
    out = {}
    for n in stage.needs:
        value = nodes[n].value()
        out[n] = value[model] if model is not None and nodes[n].stage.unit else value
    return out


def _cached(stage: Stage, target: Target, forced: bool, invalid: list[str]) -> bool:
    """Whether a finished result can be reused: done, not forced, and valid (an invalid one
    is moved back to its scratch directory, so a resumable stage redoes only what is bad;
    why it was invalid is appended to ``invalid``)."""
    if forced or not store.is_done(target.dir):
        return False
    why = invalid_reason(stage, target.dir)
    if why is None:
        return True
    log.warning("%s: cached result %s is invalid (%s); recomputing", target.label,
                target.dir, why)
    invalid.append(why)
    store.reopen(target.dir, keep=stage.resumable)
    return False


def invalid_reason(stage: Stage, result: Path) -> str | None:
    """Why a finished result of ``stage`` is unusable: a file it recorded is gone or
    truncated, or it fails the stage's own check (None when it is sound)."""
    if stage.check is not None:
        try:
            stage.check(result)
        except store.Invalid as err:
            return str(err)
    missing = store.missing_files(result)
    more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
    return "; ".join(missing[:3]) + more if missing else None


def _input_targets(nodes: dict[str, Node], stage: Stage, model: str | None
                   ) -> list[tuple[str, Target]]:
    """The finished targets ``stage`` (for ``model``, if per-model) reads, by stage name."""
    out = []
    for need in stage.needs:
        if stage.across_seeds:
            node_list = [ns[need] for ns in nodes[stage.name].seeds.values()]
        else:
            node_list = [nodes[need]]
        for node in node_list:
            if model is not None and node.stage.unit is not None:
                targets = [node.units[model]] if model in node.units else []
            else:
                targets = node.targets()
            out += [(need, t) for t in targets if store.is_done(t.dir)]
    return out


def unsound_inputs(cfg: DictConfig, nodes: dict[str, Node], stage: Stage,
                   model: str | None = None) -> list[tuple[str, str]]:
    """(label, what is wrong) for each finished input of ``stage`` that this run does not
    produce itself (those are checked as they are reused), naming the file."""
    out = []
    for need, t in _input_targets(nodes, stage, model):
        if need not in cfg.stages:
            why = invalid_reason(REGISTRY[need], t.dir)
            if why:
                out.append((t.label, f"{why}; rerun with stages=[{need}] (an invalid result "
                                     "is redone)"))
    return out


def _refuse_unsound(stage_name: str, problems: list[tuple[str, str]]) -> None:
    unique = dict(problems)  # one line per input, however many units read it
    if unique:
        raise store.Invalid(f"stage {stage_name}: " + "\n".join(
            f"input {label} is invalid: {why}" for label, why in unique.items()))


def _why_running(stage: Stage, target: Target, forced: bool, invalid: list[str]) -> str:
    """What the log says a target runs for: forced, redoing an invalid result, resuming a
    stopped run's partial result, or what changed since the newest earlier result."""
    if forced:
        return f"recomputing: force=[{stage.name}]"
    if invalid:
        return f"recomputing: the cached result was invalid ({invalid[-1]})"
    if stage.resumable and store.partial_path(target.dir).exists():
        return "resuming the partial result a stopped run left"
    return explain(target)


def _run_target(cfg: DictConfig, stage: Stage, target: Target,
                work: Callable[[Path], dict],
                inputs_sound: Callable[[], None] = lambda: None) -> str:
    """Run one target under its lock: reuse it if cached (also when another run finished it
    while this one waited), else check its inputs, run ``work`` into its scratch directory
    and commit."""
    forced = stage.name in cfg.force
    invalid: list[str] = []
    if _cached(stage, target, forced, invalid):
        log.info("%s: cached at %s", target.label, target.dir)
        return "cached"
    with store.lock(target.dir, target.label):
        if not forced and _cached(stage, target, forced, invalid):
            log.info("%s: cached at %s (made by another run meanwhile)", target.label,
                     target.dir)
            return "cached"
        inputs_sound()
        log.info("%s: running into %s (%s)", target.label, target.dir,
                 _why_running(stage, target, forced, invalid))
        start = time.perf_counter()
        tmp = store.partial_dir(target.dir, resume=stage.resumable and not forced)
        try:
            summary = work(tmp)
        except BaseException:
            if not stage.resumable:  # nothing half-written is left behind
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        seconds = round(time.perf_counter() - start, 1)
        store.commit(tmp, target.dir, {
            "stage": stage.name, "model": target.model, "key": target.key,
            "seconds": seconds, "config": target.config, "inputs": target.inputs,
            "code": target.code, "summary": summary})
    log.info("%s: done in %.1f s", target.label, seconds)
    return "ran"


def _run_units(cfg: DictConfig, nodes: dict[str, Node], names: list[str]) -> dict[str, str]:
    """The per-model stages ``names`` for every selected model: one chain per model (its
    stages in order), ``train.parallel`` chains at a time, the costliest model first."""
    specs = model_specs(cfg)
    data = _prepared(nodes, names)
    _log_disk(cfg, specs, data)
    status: dict[str, str] = {}

    def step(name: str, model: str) -> Callable[[], None]:
        stage, target = REGISTRY[name], nodes[name].units[model]
        inputs = _inputs(nodes, stage, model)

        def run() -> None:
            status[target.label] = _run_target(
                cfg, stage, target, lambda tmp: stage.unit(cfg, model, specs[model], tmp, inputs))
        return run

    for name in names:  # the inputs of every unit that will run, checked before any runs
        stage = REGISTRY[name]
        _refuse_unsound(name, [p for model in nodes[name].units
                               if name in cfg.force or not store.is_done(
                                   nodes[name].units[model].dir)
                               for p in unsound_inputs(cfg, nodes, stage, model)])
    order = costliest_first(cfg, specs, data, nodes, tuple(names))
    chains = [[step(name, model) for name in names if model in nodes[name].units]
              for model in order]
    jobs.run_chains(chains, int(cfg.train.parallel))
    for name in names:
        if REGISTRY[name].table is not None:
            _log_table(REGISTRY[name].table, nodes[name])
    return status


def _prepared(nodes: dict[str, Node], names: list[str]) -> Path:
    """The prepared data the models of the per-model stages ``names`` read: the result of the
    stage they declare as their ``data`` (their cost and disk estimates read it)."""
    sources = {REGISTRY[name].data for name in names} - {None}
    if len(sources) != 1:
        raise ValueError(f"stages {names} declare {sorted(sources)} as their data: one expected")
    return nodes[sources.pop()].dir


def costliest_first(cfg: DictConfig, specs: dict[str, dict], data: Path,
                    nodes: dict[str, Node], names: tuple[str, ...]) -> list[str]:
    """Model names by the time of their chain of ``names`` stages, the longest first: it
    starts at once and the shorter chains fill the other workers meanwhile. The times are
    measured (each model's newest finished units, any key: another seed's) when every model
    has them, else estimated from the stages' declared work and the cost table
    (pipeline.costs); the order is logged with its times before any work."""
    stages = {m: [REGISTRY[n] for n in names if m in nodes[n].units] for m in specs}
    measured = {m: {s.name: _last_seconds(nodes[s.name].units[m].dir.parent)
                    for s in stages[m]} for m in specs}
    if all(sum(t.values()) > 0 for t in measured.values()):
        times, how = measured, "measured in an earlier run"
    else:
        times = {m: costs.estimate(cfg, specs[m], data, stages[m]) for m in specs}
        how = f"estimated from {costs.TABLE.name}"
    order = sorted(specs, key=lambda m: -sum(times[m].values()))
    log.info("chains, the longest first (%s):\n%s", how, "\n".join(
        f"  {m:26s} {sum(times[m].values()):6.0f} s ("
        + ", ".join(f"{n} {t:.0f}" for n, t in times[m].items()) + ")" for m in order))
    return order


def _last_seconds(unit_parent: Path) -> float:
    """Seconds the newest finished unit under ``unit_parent`` took (0 when there is none)."""
    records = []
    for done in unit_parent.glob(f"*/{store.DONE}"):
        with contextlib.suppress(OSError, ValueError):  # a damaged record: no measurement
            records.append(store.read_done(done.parent))
    records = [r for r in records if isinstance(r.get("seconds"), int | float)]
    return float(max(records, key=lambda r: r.get("finished", ""))["seconds"]) if records else 0.0


def _log_disk(cfg: DictConfig, specs: dict[str, dict], data: Path) -> None:
    """The disk the selected models will take, before any work: each model's estimate from
    every stage that declares one (e.g. checkpoints, extraction), and their totals."""
    stages = [stage for stage in REGISTRY.values() if stage.disk is not None]
    totals: dict[str, float] = {}
    for name, spec in specs.items():
        estimates = [stage.disk(cfg, spec, data) for stage in stages]
        for e in estimates:
            totals[e.what] = totals.get(e.what, 0.0) + e.mb
        log.info("model %-22s %s", name, "; ".join(e.text for e in estimates))
    log.info("disk: %s", ", ".join(f"{what} about {mb:.0f} MB" for what, mb in totals.items()))


def _log_table(title: str, node: Node) -> None:
    """The finished units' summaries of a per-model stage as one table (e.g. each trained
    model's evaluation)."""
    import pandas as pd

    rows = [store.read_done(u.dir)["summary"] for u in node.units.values()
            if store.is_done(u.dir)]
    if rows:
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            log.info("%s:\n%s", title, pd.DataFrame(rows).to_string(index=False))


def _check_inputs(nodes: dict[str, Node], name: str, requested: list[str]) -> None:
    """Every stage ``name`` reads must be requested too or already done for this config."""
    stage = REGISTRY[name]
    for need in stage.needs:
        if need in requested:
            continue
        if stage.across_seeds:
            missing = [s for s, ns in nodes[name].seeds.items() if not ns[need].done()]
            if missing:
                raise MissingInput(
                    f"stage {name} needs {need} for seeds {missing}, not run for this config: "
                    f"run `python -m pipeline -m seed={','.join(map(str, missing))} ...` first")
            continue
        node = nodes[need]
        if not node.done():
            where = ", ".join(str(t.dir) for t in node.targets() if not store.is_done(t.dir))
            raise MissingInput(f"stage {name} needs {need}, which has not been run for this "
                               f"config ({where}); add it to stages=[...]")


def _dry_check(stage: Stage, result: Path) -> str | None:
    """The check a run makes of a cached result, said instead of done (None: sound)."""
    try:
        why = invalid_reason(stage, result)
    except RuntimeError as err:  # e.g. a changed checkpoint, which a run refuses
        return f"refused ({err})"
    return None if why is None else f"invalid ({why}): recomputed"


def dry_run(cfg: DictConfig, nodes: dict[str, Node], requested: list[str]) -> dict[str, str]:
    """Every requested stage and model: cached, stale (and why), or missing; nothing runs."""
    status = {}
    for name in requested:
        stage = REGISTRY[name]
        for t in nodes[name].targets():
            if store.is_done(t.dir) and name not in cfg.force:
                why = _dry_check(stage, t.dir)
                status[t.label] = "cached" if why is None else why
            elif name in cfg.force:
                status[t.label] = "forced"
            else:
                why = explain(t)
                status[t.label] = "missing" if why == "no earlier result" else f"stale ({why})"
        for label, why in unsound_inputs(cfg, nodes, stage):
            status[f"{label} (an input of {name})"] = f"invalid: {why}"
    width = max(map(len, status), default=0)
    log.info("dry run: nothing is run\n%s",
             "\n".join(f"  {label:{width}s}  {what}" for label, what in status.items()))
    return status


def run_pipeline(cfg: DictConfig) -> dict[str, str]:
    """Run the requested stages in order; cached stages and units are skipped and said to be.
    Returns what happened to each (stage, or stage and model for per-model stages)."""
    for key in ("stages", "force"):
        unknown = [s for s in cfg[key] if s not in REGISTRY]
        if unknown:
            raise ValueError(f"{key}={list(cfg[key])}: unknown stage(s) {unknown}; stages are "
                             f"{list(REGISTRY)}")
    nodes = plan(cfg)
    requested = [s for s in REGISTRY if s in cfg.stages]
    if cfg.get("dry_run"):
        return dry_run(cfg, nodes, requested)
    for name in requested:
        _check_inputs(nodes, name, requested)
    status: dict[str, str] = {}
    with jobs.signals_stop():
        i = 0
        while i < len(requested):
            group = [requested[i]]
            while (REGISTRY[group[-1]].unit is not None and i + len(group) < len(requested)
                   and REGISTRY[requested[i + len(group)]].unit is not None):
                group.append(requested[i + len(group)])
            if REGISTRY[group[0]].unit is not None:
                status.update(_run_units(cfg, nodes, group))
            else:
                stage = REGISTRY[group[0]]
                inputs = _inputs(nodes, stage)
                status[stage.name] = _run_target(
                    cfg, stage, nodes[stage.name].target,
                    lambda tmp, stage=stage, inputs=inputs: stage.run(cfg, tmp, inputs),
                    lambda stage=stage: _refuse_unsound(stage.name,
                                                        unsound_inputs(cfg, nodes, stage)))
            i += len(group)
    for name, what in status.items():
        log.info("%-30s %s", name, what)
    return status
