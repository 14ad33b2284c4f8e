"""The plan: every stage's (and every model unit's) key and result directory for one config.

A key hashes the stage's config keys, its inputs' keys and the code it runs (pipeline.codehash),
so editing a stage's code reruns it and what reads it; ``explain`` says why a target is not
cached. The across-seeds stage (aggregate) plans the stages it reads once per seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from pipeline import codehash, store
from pipeline.config import model_specs
from pipeline.models import adapter
from pipeline.stages.registry import REGISTRY
from pipeline.stages.stage import Stage


@dataclass(frozen=True)
class Target:
    """One result directory (a whole stage's, or one model's unit) and what its key hashes."""

    stage: str
    model: str | None
    key: str
    dir: Path
    config: dict
    inputs: dict
    code: dict

    @property
    def label(self) -> str:
        return f"{self.stage} {self.model}" if self.model else f"stage {self.stage}"


@dataclass
class Node:
    """A stage's result for one config: one target, or one per model; across-seeds stages
    also hold each seed's plan of the stages they read."""

    stage: Stage
    key: str
    target: Target | None = None
    units: dict[str, Target] = field(default_factory=dict)
    seeds: dict[int, dict[str, Node]] = field(default_factory=dict)

    @property
    def dir(self) -> Path | None:
        return self.target.dir if self.target else None

    def targets(self) -> list[Target]:
        return list(self.units.values()) if self.stage.unit else [self.target]

    def done(self) -> bool:
        return all(store.is_done(t.dir) for t in self.targets())

    def value(self):
        """What a stage that reads this one receives: its directory or {model: unit dir}."""
        if self.stage.unit is not None:
            return {m: u.dir for m, u in self.units.items()}
        return self.dir



# Settings inside a keyed group that say how many processes do the work, never what it
# computes: left out of every key, so changing them reuses the result.
UNKEYED = ("plot.workers",)


def _config_of(cfg: DictConfig, keys: tuple[str, ...]) -> dict:
    """The values of (possibly dotted) config keys, as plain data, less ``UNKEYED``."""
    values = {}
    for k in keys:
        v = OmegaConf.select(cfg, k)
        values[k] = OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
        for path in UNKEYED:
            group, _, name = path.rpartition(".")
            if group == k and isinstance(values[k], dict):
                values[k].pop(name, None)
    return values


def _input_key(node: Node, model: str | None = None) -> str:
    return node.units[model].key if model is not None and node.stage.unit else node.key


def _with_seed(cfg: DictConfig, seed: int) -> DictConfig:
    copy = cfg.copy()
    with open_dict(copy):
        copy.seed = int(seed)
    return copy


def _target(root: Path, experiment: str, stage: Stage, model: str | None, config: dict,
            inputs: dict, code_entries: tuple[str, ...]) -> Target:
    code = codehash.code_hashes(code_entries)
    key = store.stage_key(stage.name, config, inputs, code)
    where = (store.unit_dir(root, experiment, stage.name, model, key) if model
             else store.stage_dir(root, experiment, stage.name, key))
    return Target(stage.name, model, key, where, config, inputs, code)


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
            inputs = {f"{n}/seed={s}": ns[n].key for s, ns in per_seed.items()
                      for n in stage.needs}
            t = _target(root, experiment, stage, None, config, inputs, stage.code)
            nodes[name] = Node(stage, t.key, t, seeds=per_seed)
        elif stage.unit is not None:
            units = {}
            for model, spec in specs.items():
                if stage.applies is not None and not stage.applies(cfg, spec):
                    continue
                inputs = {n: _input_key(nodes[n], model) for n in stage.needs}
                if stage.files is not None:
                    inputs.update(stage.files(cfg, spec))
                module = type(adapter(spec)).__module__  # the model's own adapter code
                units[model] = _target(root, experiment, stage, model,
                                       {**config, "model": spec}, inputs,
                                       (*stage.code, module))
            key = store.stage_key(name, {}, {m: u.key for m, u in units.items()}, {})
            nodes[name] = Node(stage, key, units=units)
        else:
            inputs = {n: nodes[n].key for n in stage.needs}
            if stage.files is not None:
                inputs.update(stage.files(cfg, None))
            t = _target(root, experiment, stage, None, config, inputs, stage.code)
            nodes[name] = Node(stage, t.key, t)
    return nodes


def explain(target: Target) -> str:
    """Why a target is not cached: what differs from the newest finished result of the same
    stage (and model) — code files, config keys, inputs — or that there is none."""
    records = []
    for done in target.dir.parent.glob(f"*/{store.DONE}"):
        if done.parent != target.dir:
            record = store.read_done(done.parent)
            records.append((record.get("finished", ""), record))
    if not records:
        return "no earlier result"
    return differences(max(records, key=lambda r: r[0])[1], target)


def differences(old: dict, target: Target) -> str:
    """What makes ``target``'s key differ from a finished result's record (its code, config
    and inputs), e.g. "code changed: analysis/dynamics.py"."""
    found = {
        "code": codehash.changed(old.get("code", {}), target.code),
        "config": store.changed_keys(old.get("config", {}), target.config),
        "inputs": store.changed_keys(old.get("inputs", {}), target.inputs),
    }
    reasons = [f"{what} changed: {_few(names)}" for what, names in found.items() if names]
    return "; ".join(reasons) or "an earlier result with another key"


def _few(names: list[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")
