"""The stage graph and its runner.

    prepare ─► train ─► extract ─► analyze ─► plot
                                      └──────► aggregate (several seeds' analyses pooled)

`train` and `extract` are per-model: each selected model is its own cached unit, keyed by
that model's resolved preset, the stage's settings and its inputs' keys, so changing one model
recomputes that model only. Requested together, a model's extraction starts as soon as its own
training is done; `train.parallel` models run at a time, the longest first. The other stages
are whole: one directory per key. `aggregate` finds the seeds it pools through their keys.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from pipeline import jobs, store
from pipeline.config import model_specs
from pipeline.models import adapter

log = logging.getLogger(__name__)

StageFn = Callable[[DictConfig, Path, dict], dict]
UnitFn = Callable[[DictConfig, str, dict, Path, dict], dict]


@dataclass(frozen=True)
class Stage:
    """A step of the chain: the config its key depends on, the stages it reads, and either a
    whole-stage function or a per-model unit function."""

    name: str
    config: tuple[str, ...]
    needs: tuple[str, ...] = ()
    run: StageFn | None = None
    unit: UnitFn | None = None
    resumable: bool = False
    check: Callable[[Path], None] | None = None  # validates a cached result before reuse
    across_seeds: bool = False                    # reads `needs` for every aggregate.seeds


@dataclass(frozen=True)
class Unit:
    """One model's result of a per-model stage."""

    model: str
    key: str
    dir: Path


@dataclass
class Node:
    """Where a stage's result lives for one config: a directory, or one unit per model."""

    stage: Stage
    key: str
    dir: Path | None = None
    units: dict[str, Unit] = field(default_factory=dict)
    seeds: dict[int, dict[str, Node]] = field(default_factory=dict)

    def done(self) -> bool:
        if self.stage.unit is not None:
            return all(store.is_done(u.dir) for u in self.units.values())
        return store.is_done(self.dir)

    def value(self):
        """What a stage that reads this one receives: its directory or {model: unit dir}."""
        if self.stage.unit is not None:
            return {m: u.dir for m, u in self.units.items()}
        return self.dir


# ---------------------------------------------------------------------------- stage functions

def _prepare(cfg: DictConfig, out: Path, inputs: dict) -> dict:
    import pandas as pd

    from data_prep.prepare import prepare

    summary = prepare(OmegaConf.to_container(cfg.data, resolve=True), out, cfg.mirror,
                      cfg.cache_dir, cfg.download)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        log.info("corpus statistics (%s):\n%s", out.name, summary["stats"].to_string(index=False))
    return {"rows": len(summary["stats"])}


def _train(cfg: DictConfig, name: str, spec: dict, out: Path, inputs: dict) -> dict:
    from pipeline.train import train_model

    return train_model(name, spec, inputs["prepare"], out, int(cfg.seed),
                       OmegaConf.to_container(cfg.train, resolve=True))


def _extract(cfg: DictConfig, name: str, spec: dict, out: Path, inputs: dict) -> dict:
    return jobs.call_in_process("pipeline.extract:extract_model", name, spec, inputs["train"],
                                inputs["prepare"], out,
                                OmegaConf.to_container(cfg.extract, resolve=True),
                                threads=int(cfg.train.threads))


def _analyze(cfg: DictConfig, out: Path, inputs: dict) -> dict:
    from pipeline.analyze_stage import run_analyze

    return run_analyze(cfg, out, inputs)


def _plot(cfg: DictConfig, out: Path, inputs: dict) -> dict:
    from pipeline.plot_stage import run_plot

    return run_plot(cfg, out, inputs)


def _aggregate(cfg: DictConfig, out: Path, inputs: dict) -> dict:
    from pipeline.aggregate_stage import run_aggregate

    return run_aggregate(cfg, out, inputs)


def _verify(unit_dir: Path) -> None:
    from pipeline.checkpoints import verify

    verify(unit_dir)


REGISTRY: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("prepare", ("data",), run=_prepare),
        # threads and parallel jobs do not change results, so they are not in the key
        Stage("train", ("seed", "train.device", "train.schedule", "train.max_valid_steps",
                        "train.fairseq"), ("prepare",), unit=_train, resumable=True,
              check=_verify),
        Stage("extract", ("extract",), ("prepare", "train"), unit=_extract, resumable=True),
        Stage("analyze", ("analysis",), ("train", "extract"), run=_analyze),
        Stage("plot", ("plot",), ("analyze",), run=_plot),
        Stage("aggregate", ("aggregate", "analysis", "plot"), ("train", "extract", "analyze"),
              run=_aggregate, across_seeds=True),
    )
}


# ---------------------------------------------------------------------------- the plan

def _config_of(cfg: DictConfig, keys: tuple[str, ...]) -> dict:
    """The values of (possibly dotted) config keys, as plain data."""
    values = {}
    for k in keys:
        v = OmegaConf.select(cfg, k)
        values[k] = OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
    return values


def _input_key(node: Node, model: str | None = None) -> str:
    return node.units[model].key if model is not None and node.stage.unit else node.key


def _with_seed(cfg: DictConfig, seed: int) -> DictConfig:
    copy = cfg.copy()
    with open_dict(copy):
        copy.seed = int(seed)
    return copy


def plan(cfg: DictConfig, seeds: bool = True) -> dict[str, Node]:
    """Key and location of every stage (and every model's unit) for this config; with
    ``seeds``, the across-seeds stages also plan the others for each of their seeds."""
    root, experiment = Path(cfg.artifacts_dir), cfg.name
    specs = model_specs(cfg)
    nodes: dict[str, Node] = {}
    for name, stage in REGISTRY.items():
        config = _config_of(cfg, stage.config)
        if stage.across_seeds:
            if not seeds:
                continue
            per_seed = {int(s): plan(_with_seed(cfg, s), seeds=False)
                        for s in cfg.aggregate.seeds}
            key = store.stage_key(name, config, {f"{n}/seed={s}": ns[n].key
                                                 for s, ns in per_seed.items()
                                                 for n in stage.needs})
            nodes[name] = Node(stage, key, store.stage_dir(root, experiment, name, key),
                               seeds=per_seed)
        elif stage.unit is not None:
            units = {}
            for model, spec in specs.items():
                key = store.stage_key(name, {**config, "model": spec},
                                      {n: _input_key(nodes[n], model) for n in stage.needs})
                units[model] = Unit(model, key, store.unit_dir(root, experiment, name, model,
                                                               key))
            key = store.stage_key(name, {}, {m: u.key for m, u in units.items()})
            nodes[name] = Node(stage, key, units=units)
        else:
            key = store.stage_key(name, config, {n: nodes[n].key for n in stage.needs})
            nodes[name] = Node(stage, key, store.stage_dir(root, experiment, name, key))
    return nodes


# ---------------------------------------------------------------------------- the runner

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


def _record(cfg: DictConfig, stage: Stage, key: str, inputs: dict, summary: dict,
            seconds: float, extra: dict | None = None) -> dict:
    return {"stage": stage.name, "key": key, "seconds": seconds,
            "config": {**_config_of(cfg, stage.config), **(extra or {})},
            "inputs": inputs, "summary": summary}


def _run_into(final: Path, resumable: bool, fresh: bool, work: Callable[[Path], dict],
              record: Callable[[dict, float], dict]) -> float:
    """Run ``work`` into the scratch directory of ``final`` and commit it; a failure of a
    non-resumable step leaves nothing behind."""
    start = time.perf_counter()
    tmp = store.partial_dir(final, resume=resumable and not fresh)
    try:
        summary = work(tmp)
    except BaseException:
        if not resumable:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = round(time.perf_counter() - start, 1)
    store.commit(tmp, final, record(summary, seconds))
    return seconds


def _run_whole(cfg: DictConfig, nodes: dict[str, Node], name: str) -> str:
    node, stage = nodes[name], REGISTRY[name]
    if node.done() and name not in cfg.force:
        if stage.check is not None:
            stage.check(node.dir)
        log.info("stage %s: cached at %s", name, node.dir)
        return "cached"
    log.info("stage %s: running into %s", name, node.dir)
    inputs = _inputs(nodes, stage)
    seconds = _run_into(
        node.dir, stage.resumable, name in cfg.force,
        lambda tmp: stage.run(cfg, tmp, inputs),
        lambda summary, s: _record(cfg, stage, node.key, _input_keys(nodes, stage), summary,
                                   s))
    log.info("stage %s: done in %.1f s", name, seconds)
    return "ran"


def _input_keys(nodes: dict[str, Node], stage: Stage, model: str | None = None) -> dict:
    if stage.across_seeds:
        return {f"{n}/seed={s}": ns[n].key for s, ns in nodes[stage.name].seeds.items()
                for n in stage.needs}
    return {n: _input_key(nodes[n], model) for n in stage.needs}


def _unit_step(cfg: DictConfig, nodes: dict[str, Node], name: str, model: str,
               spec: dict) -> Callable[[], None]:
    node, stage = nodes[name], REGISTRY[name]
    unit = node.units[model]

    def step() -> None:
        log.info("%s %s: running into %s", name, model, unit.dir)
        inputs = _inputs(nodes, stage, model)
        seconds = _run_into(
            unit.dir, stage.resumable, name in cfg.force,
            lambda tmp: stage.unit(cfg, model, spec, tmp, inputs),
            lambda summary, s: _record(cfg, stage, unit.key, _input_keys(nodes, stage, model),
                                       summary, s, {"model": spec}))
        log.info("%s %s: ran in %.1f s", name, model, seconds)

    return step


def _run_units(cfg: DictConfig, nodes: dict[str, Node], names: list[str]) -> dict[str, str]:
    """The per-model stages ``names`` for every selected model: one chain per model (its
    stages in order), ``train.parallel`` chains at a time, the costliest model first."""
    specs = model_specs(cfg)
    data = nodes["prepare"].dir
    order = costliest_first(specs, data)
    _log_disk(cfg, specs, data)
    chains, status = [], {}
    for model in order:
        steps = []
        for name in names:
            unit = nodes[name].units[model]
            if store.is_done(unit.dir) and name not in cfg.force:
                if REGISTRY[name].check is not None:
                    REGISTRY[name].check(unit.dir)
                log.info("%s %s: cached at %s", name, model, unit.dir)
                status[f"{name} {model}"] = "cached"
                continue
            steps.append(_unit_step(cfg, nodes, name, model, specs[model]))
            status[f"{name} {model}"] = "ran"
        if steps:
            chains.append(steps)
    jobs.run_chains(chains, int(cfg.train.parallel))
    if "train" in names:
        _log_models(nodes["train"])
    return status


def costliest_first(specs: dict[str, dict], data: Path) -> list[str]:
    """Model names by their adapter's estimate of training cost, the costliest first: it
    starts at once and the cheaper models fill the other workers meanwhile."""
    return sorted(specs, key=lambda m: -adapter(specs[m]).work(specs[m], data))


def _log_disk(cfg: DictConfig, specs: dict[str, dict], data: Path) -> None:
    """The disk the selected models' checkpoints and extractions will take, before any work."""
    from pipeline.extract import disk_estimate
    from pipeline.train import checkpoint_mb, schedule

    train = OmegaConf.to_container(cfg.train, resolve=True)
    extract = OmegaConf.to_container(cfg.extract, resolve=True)
    total_ckpt = total_reps = 0.0
    for name, spec in specs.items():
        n = len(schedule(spec, train))
        ckpt = checkpoint_mb(spec, data, train)
        n_ext = 1 if adapter(spec).reference and extract["reference_checkpoints"] == "last" \
            else n
        reps = disk_estimate(spec, n_ext, data, extract) / 1e6
        total_ckpt, total_reps = total_ckpt + ckpt, total_reps + reps
        log.info("model %-22s %2d checkpoints, %6.0f MB; extraction %6.0f MB", name, n, ckpt,
                 reps)
    log.info("disk: checkpoints about %.0f MB, extraction about %.0f MB", total_ckpt,
             total_reps)


def _log_models(node: Node) -> None:
    import pandas as pd

    rows = [store.read_done(u.dir)["summary"] for u in node.units.values()
            if store.is_done(u.dir)]
    if rows:
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            log.info("trained models:\n%s", pd.DataFrame(rows).to_string(index=False))


def _check_inputs(nodes: dict[str, Node], name: str, requested: list[str]) -> None:
    """Every stage ``name`` reads must be requested too or already done for this config."""
    stage = REGISTRY[name]
    for need in stage.needs:
        if need in requested:
            continue
        if stage.across_seeds:
            missing = [s for s, ns in nodes[name].seeds.items() if not ns[need].done()]
            if missing:
                raise RuntimeError(
                    f"stage {name} needs {need} for seeds {missing}, not run for this config: "
                    f"run `python -m pipeline -m seed={','.join(map(str, missing))} ...` first")
            continue
        node = nodes[need]
        if not node.done():
            where = node.dir or ", ".join(str(u.dir) for u in node.units.values()
                                          if not store.is_done(u.dir))
            raise RuntimeError(f"stage {name} needs {need}, which has not been run for this "
                               f"config ({where}); add it to stages=[...]")


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
                status[group[0]] = _run_whole(cfg, nodes, group[0])
            i += len(group)
    for name, what in status.items():
        log.info("%-30s %s", name, what)
    return status
