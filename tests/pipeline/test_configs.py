"""Every experiment config composes, and prepare's cache key ignores the model seed (the groups
read typed, field for field: tests/pipeline/test_schema.py)."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pipeline.config import CONFIG_DIR, CONFIG_NAME
from pipeline.plan import plan
from pipeline.stages.registry import REGISTRY

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
    key = plan(make_cfg("experiment=smoke"))["prepare"].key
    assert plan(make_cfg("experiment=smoke", "seed=7"))["prepare"].key == key
    changed = make_cfg("experiment=smoke", "data.lm.vocab_size=123")
    assert plan(changed)["prepare"].key != key


def test_the_plot_processes_are_in_no_key_the_figures_settings_are():
    nodes = plan(make_cfg("experiment=smoke"))
    workers = plan(make_cfg("experiment=smoke", "plot.workers=1"))
    dpi = plan(make_cfg("experiment=smoke", "plot.dpi=50"))
    for stage in ("plot", "aggregate"):
        assert workers[stage].key == nodes[stage].key, stage
        assert dpi[stage].key != nodes[stage].key, stage


def test_taggers_inherit_their_lm_through_the_defaults_list():
    cfg = make_cfg("experiment=smoke")
    lm, tagger = cfg.model.lstm_lm_paper, cfg.model.tagger_pos
    for key in ("layers", "embed_dim", "hidden", "dropout", "lr", "tokens_per_sample"):
        assert tagger[key] == lm[key], key
    assert (tagger.kind, tagger.tags, tagger.max_update) == ("lstm_tagger", "pos", 20)


def test_each_model_unit_key_follows_its_own_preset_only():
    base = plan(make_cfg("experiment=smoke"))["train"].units
    changed = plan(make_cfg("experiment=smoke", "model.tagger_pos.max_update=25"))["train"].units
    assert {m for m in base if base[m].key != changed[m].key} == {"tagger_pos"}


def test_only_translation_models_have_a_translate_unit_and_analyze_reads_them():
    nodes = plan(make_cfg("experiment=smoke"))
    assert set(nodes["translate"].units) == {"transformer_nmt_small"}
    assert set(nodes["extract"].units) > {"transformer_nmt_small"}
    translate = nodes["translate"].units["transformer_nmt_small"]
    assert nodes["analyze"].target.inputs["translate"] == nodes["translate"].key
    changed = plan(make_cfg("experiment=smoke", "translate.max_sentences=10"))
    assert changed["translate"].units["transformer_nmt_small"].key != translate.key
    assert changed["extract"].key == nodes["extract"].key  # nothing else moves
    assert plan(make_cfg("experiment=smoke", "model=[lstm_lm_paper]"))["translate"].units == {}
