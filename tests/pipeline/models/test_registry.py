"""The model-kind registry: every preset names a registered adapter, and lookups fail clearly."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pipeline import models
from pipeline.config import CONFIG_DIR
from pipeline.schema import _inherited


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
        assert a.sides in (("lm",), ("source", "target")) and a.family
    assert models.get("lstm_tagger").reference and not models.get("lstm_lm").reference
