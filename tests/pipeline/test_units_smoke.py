"""Per-model units on the smoke experiment: changing one model's preset recomputes that model
only (the rest is cached)."""

import re

import pytest
from conftest import run_pipeline

pytestmark = pytest.mark.slow


def _with(args, stages, *extra):
    return [a for a in args if not a.startswith("stages=")] + [f"stages=[{stages}]", *extra]


def _status(text: str) -> dict[str, str]:
    """The runner's closing lines: '<stage> [<model>]  ran|cached'."""
    return dict(re.findall(r"\] - ((?:train|extract) \S+)\s+(ran|cached)\s*$", text, flags=re.M))


def test_one_changed_model_is_the_only_one_recomputed(smoke_trained):
    art, args, *_ = smoke_trained
    first = run_pipeline(*_with(args, "prepare,train,extract"))
    assert first.returncode == 0, first.stderr[-3000:]
    changed = run_pipeline(*_with(args, "prepare,train,extract",
                                  "model.tagger_pos.max_update=25"))
    assert changed.returncode == 0, changed.stderr[-3000:]
    status = _status(changed.stdout + changed.stderr)
    assert status["train tagger_pos"] == "ran" and status["extract tagger_pos"] == "ran"
    others = {k: v for k, v in status.items() if not k.endswith(" tagger_pos")}
    assert len(others) == 14 and set(others.values()) == {"cached"}, others
