"""The model-kind registry: the adapters are found, every preset names a registered adapter,
and lookups fail clearly."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, compose
from omegaconf import OmegaConf

from pipeline import models
from pipeline.config import CONFIG_DIR, model_specs
from pipeline.schema import _inherited, validate


def _registered_in_the_sources() -> dict[str, str]:
    """{kind: module} of every ``@register("<kind>")`` in the package's source files."""
    found = {}
    for path in sorted(Path(models.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "register" and node.args):
                found[node.args[0].value] = f"pipeline.models.{path.stem}"
    return found


def test_the_adapters_are_found_not_listed():
    """In a fresh interpreter, the first lookup imports every module of the package, so the
    known kinds are exactly those its sources register, each from its own module."""
    code = ("import json, sys; from pipeline import models; "
            "kinds = {k: type(models.get(k)).__module__ for k in models.kinds()}; "
            "print(json.dumps([kinds, sorted(m for m in sys.modules "
            "if m.startswith('pipeline.models.'))]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, check=True)
    kinds, imported = json.loads(done.stdout.splitlines()[-1])
    assert kinds == _registered_in_the_sources() and len(kinds) >= 6
    package = Path(models.__file__).parent
    assert set(imported) >= {f"pipeline.models.{p.stem}" for p in package.glob("*.py")
                             if p.stem != "__init__"}


def test_every_preset_names_a_registered_kind():
    """Directly, or through the preset it inherits (a tagger's control inherits the tagger)."""
    for path in sorted(Path(CONFIG_DIR, "model").glob("*.yaml")):
        preset = path
        while OmegaConf.load(preset).get("kind") is None:
            preset = Path(CONFIG_DIR, "model", f"{_inherited(preset)}.yaml")
        assert OmegaConf.load(preset).kind in models.kinds(), path


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown model kind 'gru_lm'.*lstm_lm"):
        models.get("gru_lm")


def test_adapters_declare_sides_and_families():
    for kind in models.kinds():
        a = models.get(kind)
        if not a.external:  # a series' are its model's (below, and in the HF adapter's tests)
            assert a.sides in (("lm",), ("source", "target")) and a.family
    assert models.get("lstm_tagger").reference and not models.get("lstm_lm").reference
    series = models.get("fairseq_series")
    assert series.external and series.sides_of({"adapter": "transformer_nmt"}) == (
        "source", "target") and series.family_of({"adapter": "lstm_lm"}) == "lstm"


def test_the_schedule_is_a_preset_setting_passed_to_fairseq():
    """Each scheduler gives its own flags from the preset's parameters (a preset states every
    one: the kinds' schemas hold no values); the presets as shipped give the flags the adapters
    once fixed inline."""
    base = {"lr_scheduler": "reduce_lr_on_plateau", "lr_shrink": 0.5, "max_update": 100,
            "warmup_updates": 0, "end_lr": 0.0, "power": 1.0}
    assert models.scheduler_args(base) == ["--lr-scheduler", "reduce_lr_on_plateau",
                                           "--lr-shrink", 0.5]
    poly = {**base, "lr_scheduler": "polynomial_decay", "warmup_updates": 10}
    assert models.scheduler_args(poly) == [
        "--lr-scheduler", "polynomial_decay", "--end-learning-rate", 0.0, "--power", 1.0,
        "--total-num-update", 100, "--warmup-updates", 10]
    assert models.scheduler_args({**base, "lr_scheduler": "inverse_sqrt"}) == [
        "--lr-scheduler", "inverse_sqrt", "--warmup-updates", 0]
    with pytest.raises(KeyError, match="end_lr"):  # no value of its own for a missing one
        models.scheduler_args({"lr_scheduler": "polynomial_decay", "warmup_updates": 0,
                               "max_update": 100})
    lstm = OmegaConf.load(Path(CONFIG_DIR, "model", "lstm_lm_paper.yaml"))
    assert models.scheduler_args(lstm) == ["--lr-scheduler", "reduce_lr_on_plateau",
                                           "--lr-shrink", 0.25]
    nmt = OmegaConf.load(Path(CONFIG_DIR, "model", "transformer_nmt_small.yaml"))
    assert models.scheduler_args(nmt) == ["--lr-scheduler", "inverse_sqrt",
                                          "--warmup-updates", 200]


def test_adam_betas_are_a_preset_setting_passed_to_fairseq_as_before():
    """The Transformer presets' ``adam_betas`` give fairseq's flag exactly as the adapters
    once wrote it inline; another value is passed as given."""
    specs = model_specs(compose("experiment=default", "model=[transformer_lm_small,"
                                "transformer_nmt_small]"))
    for spec in specs.values():
        args = models.adapter(spec).fairseq_args(spec, Path("/data"))
        assert args[args.index("--adam-betas") + 1] == "(0.9, 0.98)", spec["kind"]
        other = {**spec, "adam_betas": [0.8, 0.995]}
        args = models.adapter(other).fairseq_args(other, Path("/data"))
        assert args[args.index("--adam-betas") + 1] == "(0.8, 0.995)", spec["kind"]


def test_a_transformer_series_needs_no_training_settings():
    """A fairseq series reuses a Transformer adapter's layers and states, never its training
    flags: its preset, without adam_betas or a schedule, is valid and gives its layers."""
    cfg = compose("experiment=smoke", "model=[]", "+model.mine={kind: fairseq_series, "
                  "adapter: transformer_nmt, checkpoints: /none, dictionary: /none, layers: 2, "
                  "embed_dim: 8, ffn_dim: 16}")
    validate(cfg)
    spec = model_specs(cfg)["mine"]
    assert [name for name, _, _ in models.adapter(spec).layers(spec)] == [
        "enc_embed", "enc_1", "enc_2", "dec_embed", "dec_1", "dec_2"]
