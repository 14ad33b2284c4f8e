"""Config helpers shared by the entry point and the tests: resolvers and name checks."""

from __future__ import annotations

import os

from omegaconf import OmegaConf

from pipeline.runtime import REPO_ROOT

CONFIG_DIR = os.path.join(REPO_ROOT, "conf")
CONFIG_NAME = "pipeline"


def register_resolvers() -> None:
    """`${repo_path:artifacts}` -> an absolute path inside the repository."""
    if not OmegaConf.has_resolver("repo_path"):
        OmegaConf.register_new_resolver("repo_path", lambda p="": os.path.join(REPO_ROOT, p))


register_resolvers()
