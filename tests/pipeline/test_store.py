"""The runner: atomic stage directories, cached reruns, force, and stages not built yet."""

import logging

import pytest
from omegaconf import OmegaConf

from pipeline import stages, store


def make_cfg(tmp_path, **kw):
    base = {"name": "t", "artifacts_dir": str(tmp_path), "stages": ["prepare"], "force": [],
            "data": {"x": 1}, "train": {}, "seed": 1, "extract": {}, "analysis": {}, "plot": {}}
    return OmegaConf.create({**base, **kw})


@pytest.fixture
def fake_prepare(monkeypatch):
    calls = []

    def run(cfg, out, inputs):
        calls.append(out)
        (out / "result.txt").write_text(str(cfg.data.x))
        if cfg.data.x == "boom":
            raise RuntimeError("boom")
        return {"ok": True}

    stage = stages.Stage("prepare", ("data",), run=run)
    monkeypatch.setitem(stages.REGISTRY, "prepare", stage)
    return calls


def test_rerun_is_cached_and_force_recomputes(tmp_path, fake_prepare, caplog):
    cfg = make_cfg(tmp_path)
    first = stages.run_pipeline(cfg)["prepare"]
    assert first["status"] == "ran" and len(fake_prepare) == 1
    final = store.stage_dir(tmp_path, "t", "prepare", stages.stage_location(cfg, "prepare", {})[0])
    assert store.is_done(final) and (final / "result.txt").read_text() == "1"
    with caplog.at_level(logging.INFO):
        assert stages.run_pipeline(cfg)["prepare"]["status"] == "cached"
    assert "stage prepare: cached" in caplog.text and len(fake_prepare) == 1
    assert stages.run_pipeline(make_cfg(tmp_path, force=["prepare"]))["prepare"]["status"] == "ran"
    assert len(fake_prepare) == 2


def test_failed_stage_leaves_nothing_half_written(tmp_path, fake_prepare):
    cfg = make_cfg(tmp_path, data={"x": "boom"})
    with pytest.raises(RuntimeError, match="boom"):
        stages.run_pipeline(cfg)
    assert list((tmp_path / "t" / "prepare").iterdir()) == []


def test_stages_not_built_are_reported(tmp_path, fake_prepare, caplog, monkeypatch):
    monkeypatch.setitem(stages.REGISTRY, "plot",
                        stages.Stage("plot", ("plot",), pending="issue #6"))
    cfg = make_cfg(tmp_path, stages=["prepare", "plot"])
    with caplog.at_level(logging.WARNING):
        report = stages.run_pipeline(cfg)
    assert report["plot"] == {"status": "not built yet", "pending": "issue #6"}
    assert "stage plot: NOT BUILT YET (issue #6)" in caplog.text


def test_unknown_stage_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown stage"):
        stages.run_pipeline(make_cfg(tmp_path, stages=["prepare", "trian"]))
