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
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, ValidationError

from analysis.fields import setting
from analysis.settings import AnalysisSettings, PlotSettings
from data_prep.settings import DataConfig
from pipeline.config import CONFIG_DIR, CONFIG_NAME, typed
from pipeline.stages.aggregate import AggregateConfig
from pipeline.stages.compress import CompressConfig
from pipeline.stages.extract import ExtractConfig
from pipeline.stages.registry import REGISTRY
from pipeline.stages.stability import StabilityConfig
from pipeline.stages.tickets import TicketsConfig
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
    seed: int = setting(ge=0, help="the models' initialisation")
    data_seed: int = setting(ge=0, help="the models' data order and dropout (default: seed)")
    dry_run: bool = setting()


GROUPS: dict[str, type] = {"data": DataConfig, "train": TrainConfig, "extract": ExtractConfig,
                           "translate": TranslateConfig, "compress": CompressConfig,
                           "stability": StabilityConfig, "tickets": TicketsConfig,
                           "analysis": AnalysisSettings,
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


def _node(path: Path, keys: list[str]) -> yaml.Node | None:
    """The YAML node of the nested key in the file (a defaults list does not count), with its
    line; None when the file does not set it. A `???` counts: it is where a value is asked."""
    node = yaml.compose(path.read_text())
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            return None
        node = next((v for k, v in node.value if k.value == key), None)
        if node is None:
            return None
    return node


def _sources(key: str, cfg: DictConfig) -> tuple[str | None, list[tuple[Path, list[str]]]]:
    """The selected experiment and the config files that may set ``key`` (dotted), the one
    that wins first: the experiment file, the group's file or model preset (and the preset
    it inherits); each with the keys below its package. (conf/pipeline.yaml, which sets
    every top-level key, is not among them.)"""
    choices, _, dirs = _runtime()
    parts = key.split(".")
    experiment = choices.get("experiment") or cfg.get("name")
    names = []
    if experiment:
        names.append((f"experiment/{experiment}.yaml", parts))
    if parts[0] == "model" and len(parts) > 1:
        names.append((f"model/{parts[1]}.yaml", parts[2:]))
        base = _inherited(_find(dirs, f"model/{parts[1]}.yaml"))
        if base:
            names.append((f"model/{base}.yaml", parts[2:]))
    elif parts[0] in GROUPS:
        names.append((f"{parts[0]}/{choices.get(parts[0], 'default')}.yaml", parts[1:]))
    found = [(path, keys) for name, keys in names if (path := _find(dirs, name)) is not None]
    return experiment, found


def origin(key: str, cfg: DictConfig) -> str:
    """Where ``key`` (dotted) was set: the command line (its last override of the key), the
    experiment file, the group's file or a model preset (and the preset it inherits)."""
    _, overrides, dirs = _runtime()
    for o in reversed(overrides):  # the last of a key's overrides is the one that holds
        name = o.split("=", 1)[0].lstrip("+~")
        if key == name or key.startswith(name + "."):
            return f"the command line ({o})"
    _, sources = _sources(key, cfg)
    for path, keys in sources:
        if _node(path, keys) is not None:
            return str(path)
    if key.split(".")[0] == "mirror" and os.environ.get("PIPELINE_MIRROR"):
        return "the environment (PIPELINE_MIRROR)"
    return str(_find(dirs, f"{CONFIG_NAME}.yaml") or f"conf/{CONFIG_NAME}.yaml")


def _required(key: str, cfg: DictConfig, example: str) -> str:
    """Which file leaves ``key`` as `???` (at which line, with that line's comment), whether
    it is the experiment's, and how to give the value."""
    experiment, sources = _sources(key, cfg)
    main = _find(_runtime()[2], f"{CONFIG_NAME}.yaml")
    for path, keys in sources + ([(main, key.split("."))] if main else []):
        node = _node(path, keys)
        if node is None or node.value != "???":
            continue
        line = node.start_mark.line + 1
        comment = path.read_text().splitlines()[node.start_mark.line].partition("#")[2].strip()
        where = f"{path}:{line}" + (f": {comment}" if comment else "")
        who = (f"experiment {experiment}" if path.parent.name == "experiment"
               and path.stem == experiment else path.name)
        return (f"config error: {key} is required by {who} ({where}): give it on the command "
                f"line, e.g. '{key}={example}'")
    return f"config error: {key}: missing: this setting has no default (set in {origin(key, cfg)})"


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
        key = _join(prefix, str(err.full_key))
        within = str(err.full_key).rpartition(".")[0]
        known = _fields_at(schema, within) + (list(GROUPS) + ["model"] if not prefix + within
                                              else [])
        _fail(key, unknown_key(key, known), cfg)
    except MissingMandatoryValue as err:
        example = _example(_field_type(schema, str(err.full_key)))
        raise ConfigError(_required(_join(prefix, str(err.full_key)), cfg, example)) from err
    except ValidationError as err:
        _fail(_join(prefix, str(err.full_key)), str(err).splitlines()[0], cfg)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def unknown_key(key: str, known: list[str]) -> str:
    """The problem of an unknown dotted ``key``: the keys its parent has, and the closest."""
    parent, _, name = key.rpartition(".")
    if not known:
        return "unknown key"
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"unknown key; {parent or 'the top level'} has: {', '.join(sorted(known))}{hint}"


def _field_type(schema: type, path: str) -> Any:
    """The type of the (nested) field at dotted ``path`` of ``schema``; None if there is none.
    A ``dict[str, X]`` field takes any name and holds X's; ``X | None`` is X."""
    cls: Any = schema
    for part in filter(None, path.split(".")):
        if isinstance(cls, types.UnionType) or typing.get_origin(cls) is typing.Union:
            cls = next((a for a in typing.get_args(cls) if a is not type(None)), None)
        if typing.get_origin(cls) is dict:
            cls = typing.get_args(cls)[1]
        elif isinstance(cls, type) and dataclasses.is_dataclass(cls):
            cls = typing.get_type_hints(cls).get(part)
        else:
            return None
    if isinstance(cls, types.UnionType) or typing.get_origin(cls) is typing.Union:
        cls = next((a for a in typing.get_args(cls) if a is not type(None)), None)
    return cls


def _fields_at(schema: type, path: str) -> list[str]:
    """The field names of the (nested) schema dataclass at dotted ``path``."""
    cls = _field_type(schema, path)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        return []
    return [f.name for f in dataclasses.fields(cls)]


def _example(kind: Any) -> str:
    """A placeholder value of a field's type, for a message saying how to give it."""
    if typing.get_origin(kind) is list or kind is list:
        return "[...]"
    return {int: "N", float: "X", bool: "true"}.get(kind, "...")


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

    for name, spec in models.items():
        kind = spec.get("kind")
        partial = kind is None
        if partial:  # an experiment's deltas for a model that is not selected
            if not (Path(CONFIG_DIR) / "model" / f"{name}.yaml").is_file():
                _fail(f"model.{name}", f"no preset conf/model/{name}.yaml", cfg)
            kind = _preset_kind(name)
        if kind not in kinds():
            _fail(f"model.{name}.kind", f"unknown model kind {kind!r}; kinds: {kinds()}", cfg)
        schema = get(kind).Config
        checked = _merge_check(f"model.{name}", spec, schema, cfg, partial=partial)
        if not partial:
            _ranges(f"model.{name}", checked, cfg)


def _preset_kind(name: str) -> str | None:
    """The kind of model preset conf/model/NAME.yaml (or of the preset it inherits)."""
    preset = Path(CONFIG_DIR) / "model" / f"{name}.yaml"
    if not preset.is_file():
        return None
    kind = OmegaConf.load(preset).get("kind")
    if kind is None and _inherited(preset):
        kind = OmegaConf.load(preset.with_name(f"{_inherited(preset)}.yaml")).get("kind")
    return kind


def known_keys(parent: str) -> list[str]:
    """The keys the config node at dotted ``parent`` may have ("": the top level; a model
    preset's are its kind's); empty when the schema does not say."""
    from pipeline.models import get, kinds

    group, _, rest = parent.partition(".")
    if not parent:
        return [f.name for f in dataclasses.fields(TopConfig)] + list(GROUPS) + ["model"]
    if group in GROUPS:
        return _fields_at(GROUPS[group], rest)
    if group == "model" and rest:
        name, _, within = rest.partition(".")
        kind = _preset_kind(name)
        return _fields_at(get(kind).Config, within) if kind in kinds() else []
    return []


def validate(cfg: DictConfig) -> None:
    """Check the whole config against the schema before any work; raises ConfigError."""
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # an interpolation that does not resolve
        key = getattr(err, "full_key", None)
        if not key:
            raise ConfigError(f"config error: {' '.join(str(err).split())}") from err
        _fail(str(key), str(err).splitlines()[0], cfg)
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
    if (blocker := file_in_the_way(plain["artifacts_dir"])) is not None:
        _fail("artifacts_dir", f"{blocker} is a file, not a folder", cfg)
    _probe_checks(cfg, plain["data"]["probes"])
    _analysis_checks(cfg, typed(plain["analysis"], AnalysisSettings),
                     typed(plain["plot"], PlotSettings))


def file_in_the_way(folder: str | os.PathLike) -> Path | None:
    """The file that stands where ``folder`` (to be made if absent) needs a folder: the path
    itself or one of its parents; None when there is none."""
    for path in (Path(folder), *Path(folder).parents):
        if path.exists():
            return None if path.is_dir() else path
    return None


def _probe_checks(cfg: DictConfig, probes: dict) -> None:
    """The user's probe corpora: free names, files that exist."""
    from data_prep.prepare import BUILT_IN_PROBES

    for name, probe in probes.items():
        if name in BUILT_IN_PROBES:
            _fail(f"data.probes.{name}", "the name of a built-in probe "
                  f"({', '.join(BUILT_IN_PROBES)}); choose another", cfg)
        if not Path(probe["conllu"]).is_file():
            what = "is not a file" if Path(probe["conllu"]).exists() else "does not exist"
            _fail(f"data.probes.{name}.conllu", f"{probe['conllu']} {what}", cfg)


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
