"""Config helpers shared by the entry point, the stages and the tests: resolvers, the
selected models, typed access to a config group."""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline.runtime import REPO_ROOT

CONFIG_DIR = os.path.join(REPO_ROOT, "conf")
CONFIG_NAME = "pipeline"


def register_resolvers() -> None:
    """`${repo_path:artifacts}` -> an absolute path inside the repository."""
    if not OmegaConf.has_resolver("repo_path"):
        OmegaConf.register_new_resolver("repo_path", lambda p="": os.path.join(REPO_ROOT, p))


register_resolvers()


def model_specs(cfg: DictConfig) -> dict[str, dict]:
    """Every selected model's resolved preset (name -> plain dict, completed with its kind's
    values for the optional keys an inline preset may leave out), in selection order.

    An experiment may size models the user deselected (``model=[...]``); those entries hold only
    the experiment's deltas and no ``kind``, and are not selected.
    """
    from pipeline.models import complete, get

    specs = {}
    for name, spec in OmegaConf.to_container(cfg.model, resolve=True).items():
        if "kind" in spec:
            get(spec["kind"])  # an unknown kind fails here, naming the known ones
            specs[name] = complete(spec)
    return specs


def typed(node: Any, schema: type):
    """A config node (DictConfig or plain dict) as an instance of its schema dataclass."""
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=True)
    base = OmegaConf.structured(schema)
    return OmegaConf.to_object(OmegaConf.merge(base, node))
