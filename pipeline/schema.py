"""The config schema: one dataclass per config group, checked once at start-up.

Unknown keys, wrong types and out-of-range values, in a config file, an experiment file or on
the command line, stop the run before any work, naming the key and where it was set. Each
model preset is checked against its kind's schema (the adapter's ``Config``). Stage functions
read typed settings through :func:`pipeline.config.typed`.
"""

from __future__ import annotations

import dataclasses
import difflib
import operator
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, ValidationError

from analysis.fields import setting
from analysis.settings import AnalysisSettings, PlotSettings
from data_prep.settings import DataConfig
from pipeline.config import CONFIG_DIR, typed
from pipeline.stages.aggregate import AggregateConfig
from pipeline.stages.extract import ExtractConfig
from pipeline.stages.registry import REGISTRY
from pipeline.stages.train import TrainConfig
from pipeline.stages.translate import TranslateConfig


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the key and where it was set."""


# ---------------------------------------------------------------------------- groups

@dataclass
class TopConfig:
    """The top-level keys of conf/pipeline.yaml (the groups are checked on their own)."""

    stages: list[str] = setting(help="the stages to run, in order")
    force: list[str] = setting(help="stages recomputed even when cached")
    mirror: str | None = setting(help="a folder laid out like the shared data")
    cache_dir: str = setting()
    download: bool = setting()
    artifacts_dir: str = setting()
    name: str = setting(help="the experiment's artifact subtree")
    seed: int = setting(ge=0, help="the models' initialisation and data order")
    dry_run: bool = setting()


GROUPS: dict[str, type] = {"data": DataConfig, "train": TrainConfig, "extract": ExtractConfig,
                           "translate": TranslateConfig, "analysis": AnalysisSettings,
                           "plot": PlotSettings, "aggregate": AggregateConfig}


# ---------------------------------------------------------------------------- provenance

def _runtime() -> tuple[dict, list[str], list[Path]]:
    """The running Hydra app's group choices, command-line overrides and config folders
    (conf/ and any `hydra.searchpath` folders); empty outside an app (tests compose)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except ValueError:
        return {}, [], [Path(CONFIG_DIR)]
    dirs = [Path(src.path) for src in hc.runtime.config_sources
            if src.schema == "file" and src.path]
    return dict(hc.runtime.choices), list(hc.overrides.task), dirs or [Path(CONFIG_DIR)]


def _has(path: Path, keys: list[str]) -> bool:
    """Whether the YAML file sets the nested key (a defaults list does not count)."""
    node = OmegaConf.load(path)
    for key in keys:
        if not OmegaConf.is_dict(node) or key not in node:
            return False
        node = node[key]
    return True


def origin(key: str, cfg: DictConfig) -> str:
    """Where ``key`` (dotted) was set: the command line, the experiment file, the group's file
    or a model preset (and the preset it inherits)."""
    choices, overrides, dirs = _runtime()
    for o in overrides:
        name = o.split("=", 1)[0].lstrip("+~")
        if key == name or key.startswith(name + "."):
            return f"the command line ({o})"
    parts = key.split(".")
    experiment = choices.get("experiment") or cfg.get("name")
    candidates = []  # (file, the keys below its package)
    if experiment:
        candidates.append((f"experiment/{experiment}.yaml", parts))
    if parts[0] == "model" and len(parts) > 1:
        candidates.append((f"model/{parts[1]}.yaml", parts[2:]))
        base = _inherited(_find(dirs, f"model/{parts[1]}.yaml"))
        if base:
            candidates.append((f"model/{base}.yaml", parts[2:]))
    elif parts[0] in GROUPS:
        candidates.append((f"{parts[0]}/{choices.get(parts[0], 'default')}.yaml", parts[1:]))
    for name, keys in candidates:
        path = _find(dirs, name)
        if path is not None and _has(path, keys):
            return str(path)
    if parts[0] == "mirror" and os.environ.get("PIPELINE_MIRROR"):
        return "the environment (PIPELINE_MIRROR)"
    return str(_find(dirs, "pipeline.yaml") or "conf/pipeline.yaml")


def _find(dirs: list[Path], name: str) -> Path | None:
    """The first config folder's file ``name`` (Hydra's search order)."""
    return next((d / name for d in dirs if (d / name).is_file()), None)


def _inherited(preset: Path | None) -> str | None:
    """The preset a model preset inherits through its defaults list (`- base@_here_`)."""
    if preset is None or not preset.is_file():
        return None
    for entry in OmegaConf.load(preset).get("defaults", []):
        if isinstance(entry, str) and entry.endswith("@_here_"):
            return entry.split("@", 1)[0]
    return None


# ---------------------------------------------------------------------------- checks

def _fail(key: str, problem: str, cfg: DictConfig) -> None:
    raise ConfigError(f"config error: {key}: {problem} (set in {origin(key, cfg)})")


def _merge_check(prefix: str, node: Any, schema: type, cfg: DictConfig,
                 partial: bool = False) -> Any:
    """Merge ``node`` into ``schema``: unknown keys and wrong types become ConfigErrors.
    ``partial``: only the keys given are checked (an experiment's deltas for a model that is
    not selected), not the missing ones."""
    base = OmegaConf.structured(schema)
    try:
        merged = OmegaConf.merge(base, node)
        return merged if partial else OmegaConf.to_object(merged)
    except ConfigKeyError as err:
        key = f"{prefix}.{err.full_key}" if prefix else str(err.full_key)
        parent = key.rsplit(".", 1)[0]
        known = _fields_at(schema, err.full_key.rsplit(".", 1)[0] if "." in err.full_key
                           else "")
        close = difflib.get_close_matches(key.rsplit(".", 1)[-1], known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        _fail(key, f"unknown key; {parent} has: {', '.join(sorted(known))}{hint}", cfg)
    except MissingMandatoryValue as err:
        _fail(f"{prefix}.{err.full_key}", "missing: this setting has no default", cfg)
    except ValidationError as err:
        key = f"{prefix}.{err.full_key}" if prefix else str(err.full_key)
        _fail(key, str(err).splitlines()[0], cfg)


def _fields_at(schema: type, path: str) -> list[str]:
    """The field names of the (nested) schema dataclass at dotted ``path``."""
    cls = schema
    for part in filter(None, path.split(".")):
        cls = typing.get_type_hints(cls).get(part)
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            return []
    return [f.name for f in dataclasses.fields(cls)]


BOUNDS = {"ge": (operator.ge, ">="), "gt": (operator.gt, ">"), "le": (operator.le, "<="),
          "lt": (operator.lt, "<")}


def _ranges(prefix: str, obj: Any, cfg: DictConfig) -> None:
    """Every field's ``ge``/``gt``/``le``/``lt``/``choices`` metadata, recursively (lists are
    checked element by element)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(value):
            _ranges(key, value, cfg)
            continue
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item is None or isinstance(item, bool):
                continue
            bounds = f.metadata
            if "choices" in bounds and item not in bounds["choices"]:
                _fail(key, f"{item!r} is not one of {list(bounds['choices'])}", cfg)
            for op, (ok, word) in BOUNDS.items():
                if op in bounds and not ok(item, bounds[op]):
                    why = f" ({bounds['help']})" if bounds.get("help") else ""
                    _fail(key, f"{item!r} must be {word} {bounds[op]}{why}", cfg)


def _model_checks(cfg: DictConfig, models: dict) -> None:
    from pipeline.models import get, kinds

    conf = Path(CONFIG_DIR) / "model"
    for name, spec in models.items():
        kind = spec.get("kind")
        partial = kind is None
        if partial:  # an experiment's deltas for a model that is not selected
            preset = conf / f"{name}.yaml"
            if not preset.is_file():
                _fail(f"model.{name}", f"no preset conf/model/{name}.yaml", cfg)
            kind = OmegaConf.load(preset).get("kind")
            if kind is None and _inherited(preset):
                kind = OmegaConf.load(conf / f"{_inherited(preset)}.yaml").get("kind")
        if kind not in kinds():
            _fail(f"model.{name}.kind", f"unknown model kind {kind!r}; kinds: {kinds()}", cfg)
        schema = get(kind).Config
        checked = _merge_check(f"model.{name}", spec, schema, cfg, partial=partial)
        if not partial:
            _ranges(f"model.{name}", checked, cfg)


def validate(cfg: DictConfig) -> None:
    """Check the whole config against the schema before any work; raises ConfigError."""
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # an interpolation that does not resolve
        raise ConfigError(f"config error: {err}") from err
    plain.pop("hydra", None)
    top = {k: v for k, v in plain.items() if k not in GROUPS and k != "model"}
    checked = _merge_check("", top, TopConfig, cfg)
    _ranges("", checked, cfg)
    for group, schema in GROUPS.items():
        if group not in plain:
            _fail(group, "config group missing", cfg)
        _ranges(group, _merge_check(group, plain[group], schema, cfg), cfg)
    _model_checks(cfg, plain.get("model") or {})
    for key in ("stages", "force"):
        for name in plain[key]:
            if name not in REGISTRY:
                _fail(key, f"unknown stage {name!r}; stages are {list(REGISTRY)}", cfg)
    if plain.get("mirror") is not None and not Path(plain["mirror"]).is_dir():
        what = "does not exist" if not Path(plain["mirror"]).exists() else "is not a folder"
        _fail("mirror", f"{plain['mirror']} {what}", cfg)
    _analysis_checks(cfg, typed(plain["analysis"], AnalysisSettings),
                     typed(plain["plot"], PlotSettings))


def _analysis_checks(cfg: DictConfig, a: AnalysisSettings, p: PlotSettings) -> None:
    """Settings that must agree with each other or name known metrics."""
    from analysis.comparisons import metric_specs

    for key, names in (("analysis.metrics", a.metrics), ("analysis.matrix_metrics",
                                                         a.matrix_metrics),
                       ("analysis.per_tag.metrics", a.per_tag.metrics)):
        try:
            metric_specs(a, names)
        except ValueError as err:
            _fail(key, str(err), cfg)
    computed = {s.name for s in metric_specs(a)}
    for key, names in (("plot.metrics", p.metrics), ("plot.matrix_metrics", p.matrix_metrics),
                       ("plot.per_tag_metrics", p.per_tag_metrics),
                       ("plot.primary_metric", [p.primary_metric])):
        unknown = sorted(set(names) - computed - ({"all"} if key != "plot.primary_metric"
                                                  else set()))
        if unknown:
            _fail(key, f"{unknown} are not computed by analysis.metrics (which give "
                       f"{sorted(computed)})", cfg)
    if a.per_tag.min_n > a.per_tag.max_n:
        _fail("analysis.per_tag.min_n", f"{a.per_tag.min_n} > max_n {a.per_tag.max_n}", cfg)
