"""The runner: atomic stage directories, cached reruns, force, per-model units."""

import logging

import pytest
from omegaconf import OmegaConf

from pipeline import stages, store


def make_cfg(tmp_path, **kw):
    base = {"name": "t", "artifacts_dir": str(tmp_path), "stages": ["prepare"], "force": [],
            "data": {"x": 1}, "train": {"parallel": 2}, "seed": 1, "extract": {},
            "analysis": {}, "plot": {}, "aggregate": {"seeds": [1]},
            "model": {"a": {"kind": "lstm_lm", "size": 1}, "b": {"kind": "lstm_lm", "size": 2}}}
    return OmegaConf.create({**base, **kw})


@pytest.fixture
def fake(monkeypatch):
    """A fake prepare (whole stage) and train (per model); calls are recorded."""
    calls = []

    def prepare(cfg, out, inputs):
        calls.append(("prepare", out))
        (out / "result.txt").write_text(str(cfg.data.x))
        if cfg.data.x == "boom":
            raise RuntimeError("boom")
        return {"ok": True}

    def train(cfg, name, spec, out, inputs):
        calls.append(("train", name))
        assert inputs["prepare"].name == stages.plan(cfg)["prepare"].key
        (out / "size.txt").write_text(str(spec["size"]))
        return {"model": name}

    monkeypatch.setitem(stages.REGISTRY, "prepare", stages.Stage("prepare", ("data",),
                                                                 run=prepare))
    monkeypatch.setitem(stages.REGISTRY, "train", stages.Stage("train", ("seed",), ("prepare",),
                                                               unit=train))
    monkeypatch.setattr(stages, "costliest_first", lambda specs, data: sorted(specs))
    monkeypatch.setattr(stages, "_log_disk", lambda cfg, specs, data: None)
    return calls


def test_rerun_is_cached_and_force_recomputes(tmp_path, fake, caplog):
    cfg = make_cfg(tmp_path)
    assert stages.run_pipeline(cfg)["prepare"] == "ran" and len(fake) == 1
    final = stages.plan(cfg)["prepare"].dir
    assert store.is_done(final) and (final / "result.txt").read_text() == "1"
    with caplog.at_level(logging.INFO):
        assert stages.run_pipeline(cfg)["prepare"] == "cached"
    assert "stage prepare: cached" in caplog.text and len(fake) == 1
    assert stages.run_pipeline(make_cfg(tmp_path, force=["prepare"]))["prepare"] == "ran"
    assert len(fake) == 2


def test_failed_stage_leaves_nothing_half_written(tmp_path, fake):
    cfg = make_cfg(tmp_path, data={"x": "boom"})
    with pytest.raises(RuntimeError, match="boom"):
        stages.run_pipeline(cfg)
    assert list((tmp_path / "t" / "prepare").iterdir()) == []


def test_changing_one_model_reruns_that_model_only(tmp_path, fake):
    cfg = make_cfg(tmp_path, stages=["prepare", "train"])
    assert stages.run_pipeline(cfg) == {"prepare": "ran", "train a": "ran", "train b": "ran"}
    units = stages.plan(cfg)["train"].units
    assert (units["b"].dir / "size.txt").read_text() == "2"
    assert units["a"].dir.parent.name == "a" and units["a"].dir.parent.parent.name == "train"
    changed = make_cfg(tmp_path, stages=["prepare", "train"],
                       model={"a": {"kind": "lstm_lm", "size": 1},
                              "b": {"kind": "lstm_lm", "size": 3}})
    status = stages.run_pipeline(changed)
    assert status == {"prepare": "cached", "train a": "cached", "train b": "ran"}
    assert stages.plan(changed)["train"].units["a"] == units["a"]
    assert [c for c in fake if c[0] == "train"] == [("train", "a"), ("train", "b"),
                                                   ("train", "b")]
    # the seed is part of every model's key
    assert stages.plan(make_cfg(tmp_path, seed=2))["train"].units["a"].key != units["a"].key


def test_a_stage_needs_its_inputs_run_first(tmp_path, fake):
    with pytest.raises(RuntimeError, match="stage train needs prepare, which has not been run"):
        stages.run_pipeline(make_cfg(tmp_path, stages=["train"]))


def test_unknown_stage_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown stage"):
        stages.run_pipeline(make_cfg(tmp_path, stages=["prepare", "trian"]))
