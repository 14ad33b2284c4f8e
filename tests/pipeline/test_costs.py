"""The chain-time estimates: the cost table's rates, their fallback and their calibration, and
on `default`'s models and freshly prepared data, the longest chain (the NMT's) first."""

import logging

import pytest
from conftest import compose, run_pipeline

from pipeline import costs, runner
from pipeline.config import model_specs
from pipeline.plan import plan as stage_plan
from pipeline.stages.registry import REGISTRY


def test_calibration_is_the_median_seconds_per_unit_per_stage_and_kind():
    runs = [("train", "k", "a", 10.0, 5.0), ("train", "k", "b", 30.0, 5.0),
            ("train", "k", "b", 40.0, 5.0), ("train", "j", "c", 7.0, 0.0)]  # no work: skipped
    rows = costs.calibrate(runs, "here")
    assert rows == [dict(stage="train", kind="k", seconds_per_unit="6", models=2, runs=3,
                         source="here")]


def test_an_uncalibrated_kind_gets_the_median_rate_of_its_stage(monkeypatch, caplog):
    monkeypatch.setattr(costs, "rates", lambda: {("train", "a"): 1.0, ("train", "b"): 3.0,
                                                  ("train", "c"): 8.0, ("extract", "a"): 5.0})
    costs.rate.cache_clear()
    try:
        with caplog.at_level(logging.INFO):
            assert costs.rate("train", "b") == 3.0
            assert costs.rate("train", "new") == 3.0
            assert costs.rate("translate", "new") == 1.0  # nothing calibrated for the stage
        assert "no train rate for kind new: the median of the 3 calibrated kinds" in caplog.text
    finally:
        costs.rate.cache_clear()


def test_the_table_rates_every_stage_that_declares_its_work():
    declared = {s.name for s in REGISTRY.values() if s.cost is not None}
    assert declared == {"train", "extract", "translate", "compress", "stability", "tickets"}
    assert declared == {stage for stage, _ in costs.rates()}
    assert all(v > 0 for v in costs.rates().values())


@pytest.mark.slow
def test_on_a_fresh_artifacts_dir_the_nmt_chain_starts_first(mirror, tmp_path, caplog):
    """`default`'s models, prepared data and nothing measured: the estimate orders the NMT
    (train, extract and translate: the longest chain) first."""
    args = ["experiment=default", f"mirror={mirror}", f"artifacts_dir={tmp_path}"]
    result = run_pipeline(*args, "stages=[prepare]")
    assert result.returncode == 0, result.stderr[-3000:]
    cfg = compose(*args, "stages=[prepare,train,extract,translate]")
    nodes = stage_plan(cfg)
    data = next((tmp_path / "default" / "prepare").glob("*/.done.json")).parent
    with caplog.at_level(logging.INFO):
        order = runner.costliest_first(cfg, model_specs(cfg), data, nodes,
                                       ("train", "extract", "translate"))
    assert order[0] == "transformer_nmt_small", caplog.text
    assert "estimated from stage_costs.csv" in caplog.text
