"""Every experiment config composes, and prepare's cache key ignores the model seed."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pipeline.config import CONFIG_DIR, CONFIG_NAME
from pipeline.stages import REGISTRY, stage_location

EXPERIMENTS = sorted(p.stem for p in Path(CONFIG_DIR, "experiment").glob("*.yaml"))


def make_cfg(*overrides):
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        return compose(CONFIG_NAME, overrides=list(overrides))


def test_the_three_named_experiments_exist():
    assert {"smoke", "default", "paper"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_resolves(experiment, tmp_path):
    cfg = make_cfg(f"experiment={experiment}", f"artifacts_dir={tmp_path}")
    assert cfg.name == experiment
    assert set(cfg.stages) <= set(REGISTRY)
    assert cfg.data.lm.vocab_size > 0 and cfg.data.bpe.vocab_size > 0
    assert Path(cfg.artifacts_dir) == tmp_path


def test_default_experiment_is_the_default_and_artifacts_live_in_the_repo():
    cfg = make_cfg()
    assert cfg.name == "default"
    assert Path(cfg.artifacts_dir) == Path(CONFIG_DIR).parent / "artifacts"


def test_prepare_key_depends_on_data_config_only():
    key = stage_location(make_cfg("experiment=smoke"), "prepare", {})[0]
    assert stage_location(make_cfg("experiment=smoke", "seed=7"), "prepare", {})[0] == key
    changed = make_cfg("experiment=smoke", "data.lm.vocab_size=123")
    assert stage_location(changed, "prepare", {})[0] != key
