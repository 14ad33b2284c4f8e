"""The runner: atomic stage directories, cached reruns, force, per-model units, locks,
validation of cached results, and why a stage reruns."""

import dataclasses
import logging
import re
import signal
import subprocess
import sys
import threading

import pytest
from conftest import REPO
from omegaconf import OmegaConf

from pipeline import costs, plan, runner, store
from pipeline.stages.registry import REGISTRY
from pipeline.stages.stage import Disk, Stage


def make_cfg(tmp_path, **kw):
    base = {"name": "t", "artifacts_dir": str(tmp_path), "stages": ["prepare"], "force": [],
            "data": {"x": 1}, "seed": 1, "extract": {},
            "train": {**OmegaConf.to_container(OmegaConf.load(REPO / "conf/train/cpu.yaml")),
                      "parallel": 2},
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
        assert inputs["prepare"].name == plan.plan(cfg)["prepare"].key
        (out / "size.txt").write_text(str(spec["size"]))
        return {"model": name}

    monkeypatch.setitem(REGISTRY, "prepare", Stage("prepare", ("data",),
                                                                 run=prepare))
    monkeypatch.setitem(REGISTRY, "train", Stage("train", ("seed",), ("prepare",),
                                                               unit=train, data="prepare"))
    monkeypatch.setattr(runner, "costliest_first", lambda cfg, specs, *rest: sorted(specs))
    monkeypatch.setattr(runner, "_log_disk", lambda cfg, specs, data: None)
    return calls


def test_rerun_is_cached_and_force_recomputes(tmp_path, fake, caplog):
    cfg = make_cfg(tmp_path)
    assert runner.run_pipeline(cfg)["prepare"] == "ran" and len(fake) == 1
    final = plan.plan(cfg)["prepare"].dir
    assert store.is_done(final) and (final / "result.txt").read_text() == "1"
    with caplog.at_level(logging.INFO):
        assert runner.run_pipeline(cfg)["prepare"] == "cached"
    assert "stage prepare: cached" in caplog.text and len(fake) == 1
    assert runner.run_pipeline(make_cfg(tmp_path, force=["prepare"]))["prepare"] == "ran"
    assert len(fake) == 2


def test_failed_stage_leaves_nothing_half_written(tmp_path, fake):
    cfg = make_cfg(tmp_path, data={"x": "boom"})
    with pytest.raises(RuntimeError, match="boom"):
        runner.run_pipeline(cfg)
    left = [p.name for p in (tmp_path / "t" / "prepare").iterdir()]
    assert [n for n in left if not n.endswith(".lock")] == []  # a lock file is no result


def test_changing_one_model_reruns_that_model_only(tmp_path, fake):
    cfg = make_cfg(tmp_path, stages=["prepare", "train"])
    assert runner.run_pipeline(cfg) == {"prepare": "ran", "train a": "ran", "train b": "ran"}
    units = plan.plan(cfg)["train"].units
    assert (units["b"].dir / "size.txt").read_text() == "2"
    assert units["a"].dir.parent.name == "a" and units["a"].dir.parent.parent.name == "train"
    changed = make_cfg(tmp_path, stages=["prepare", "train"],
                       model={"a": {"kind": "lstm_lm", "size": 1},
                              "b": {"kind": "lstm_lm", "size": 3}})
    status = runner.run_pipeline(changed)
    assert status == {"prepare": "cached", "train a": "cached", "train b": "ran"}
    assert plan.plan(changed)["train"].units["a"] == units["a"]
    # two workers: a and b of the first run may record in either order
    assert sorted(c for c in fake if c[0] == "train") == [("train", "a"), ("train", "b"),
                                                         ("train", "b")]
    # the seed is part of every model's key
    assert plan.plan(make_cfg(tmp_path, seed=2))["train"].units["a"].key != units["a"].key


def test_a_stage_needs_its_inputs_run_first(tmp_path, fake):
    with pytest.raises(RuntimeError, match="stage train needs prepare, which has not been run"):
        runner.run_pipeline(make_cfg(tmp_path, stages=["train"]))


def test_unknown_stage_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown stage"):
        runner.run_pipeline(make_cfg(tmp_path, stages=["prepare", "trian"]))


def test_a_second_run_waits_for_the_first_and_reuses_its_result(tmp_path, monkeypatch):
    """Two runs on one artifacts dir at once (two threads here; two processes in
    test_trust_smoke): one computes, the other waits on the lock and reuses the result."""
    started, release, calls = threading.Event(), threading.Event(), []

    def prepare(cfg, out, inputs):
        calls.append(out)
        started.set()
        assert release.wait(30)
        (out / "result.txt").write_text("1")
        return {}

    monkeypatch.setitem(REGISTRY, "prepare", Stage("prepare", ("data",),
                                                                 run=prepare))
    cfg = make_cfg(tmp_path)
    results = {}
    first = threading.Thread(target=lambda: results.update(a=runner.run_pipeline(cfg)))
    first.start()
    assert started.wait(30)
    second = threading.Thread(target=lambda: results.update(b=runner.run_pipeline(cfg)))
    second.start()
    second.join(1.0)
    assert second.is_alive()  # waiting on the lock, not computing
    release.set()
    first.join(30)
    second.join(30)
    assert len(calls) == 1
    assert sorted([results["a"]["prepare"], results["b"]["prepare"]]) == ["cached", "ran"]


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path):
    final = tmp_path / "stage" / "key"
    code = (f"from pipeline import store; import os, signal\n"
            f"with store.lock(__import__('pathlib').Path({str(final)!r}), 'x'):\n"
            f"    os.kill(os.getpid(), signal.SIGKILL)\n")
    killed = subprocess.run([sys.executable, "-c", code], cwd=REPO)
    assert killed.returncode == -signal.SIGKILL
    assert final.with_name("key.lock").exists()  # the file stays; its OS lock went with it
    done = threading.Event()

    def take():
        with store.lock(final, "x"):
            done.set()

    t = threading.Thread(target=take, daemon=True)
    t.start()
    assert done.wait(10)


def test_force_starts_a_resumable_unit_over(tmp_path, fake, monkeypatch, caplog):
    cfg = make_cfg(tmp_path, stages=["prepare", "train"])
    stage = REGISTRY["train"]
    monkeypatch.setitem(REGISTRY, "train",
                        Stage("train", ("seed",), ("prepare",), unit=stage.unit,
                                     resumable=True, data="prepare"))
    unit = plan.plan(cfg)["train"].units["a"].dir
    partial = unit.with_name(unit.name + ".partial")
    partial.mkdir(parents=True)
    (partial / "left_by_a_killed_run").write_text("x")
    with caplog.at_level(logging.INFO):
        runner.run_pipeline(cfg)
    assert (unit / "left_by_a_killed_run").exists()  # resumed from it
    assert "(resuming the partial result a stopped run left)" in caplog.text
    with caplog.at_level(logging.INFO):
        runner.run_pipeline(make_cfg(tmp_path, stages=["prepare", "train"], force=["train"]))
    assert not (unit / "left_by_a_killed_run").exists() and (unit / "size.txt").exists()
    assert "(recomputing: force=[train])" in caplog.text


def test_a_stage_refuses_an_input_whose_files_changed_and_dry_run_says_so(tmp_path, fake):
    """A finished input (not rerun here) with a file truncated or deleted stops the stage
    that reads it before any work, naming the file; a dry run says the same."""
    runner.run_pipeline(make_cfg(tmp_path, stages=["prepare", "train"]))
    result = plan.plan(make_cfg(tmp_path))["prepare"].dir / "result.txt"
    result.write_text("")
    fake.clear()
    with pytest.raises(store.Invalid, match=f"{result}: 0 bytes, 1 when it was written.*"
                       r"stages=\[prepare\]"):
        runner.run_pipeline(make_cfg(tmp_path, stages=["train"], force=["train"]))
    assert fake == []  # refused before any work
    status = runner.run_pipeline(make_cfg(tmp_path, stages=["prepare", "train"], dry_run=True))
    assert status["stage prepare"].startswith(f"invalid ({result}: 0 bytes")
    status = runner.run_pipeline(make_cfg(tmp_path, stages=["train"], dry_run=True))
    assert any("an input of train" in k and "0 bytes" in v for k, v in status.items())
    result.unlink()
    with pytest.raises(store.Invalid, match=f"{result}: missing"):
        runner.run_pipeline(make_cfg(tmp_path, stages=["train"], force=["train"]))
    runner.run_pipeline(make_cfg(tmp_path, stages=["prepare", "train"]))  # redone
    assert result.read_text() == "1"


def test_an_invalid_cached_result_is_recomputed_and_the_log_says_why(tmp_path, fake, caplog,
                                                                      monkeypatch):
    def check(path):
        if not (path / "result.txt").is_file():
            raise store.Invalid(f"{path}/result.txt is missing")

    prepare = REGISTRY["prepare"]
    monkeypatch.setitem(REGISTRY, "prepare",
                        Stage("prepare", ("data",), run=prepare.run, check=check))
    cfg = make_cfg(tmp_path)
    runner.run_pipeline(cfg)
    final = plan.plan(cfg)["prepare"].dir
    (final / "result.txt").unlink()
    with caplog.at_level(logging.INFO):
        assert runner.run_pipeline(cfg)["prepare"] == "ran"
    assert "result.txt is missing); recomputing" in caplog.text
    assert (final / "result.txt").is_file()
    with caplog.at_level(logging.INFO):
        runner.run_pipeline(make_cfg(tmp_path, data={"x": 2}))
    assert "(config changed: data.x)" in caplog.text


def test_models_are_ordered_by_their_measured_time_once_every_one_has_one(tmp_path, monkeypatch,
                                                                        caplog):
    monkeypatch.setitem(REGISTRY, "prepare", Stage("prepare", ("data",)))  # data is no DataConfig
    train = REGISTRY["train"]
    monkeypatch.setitem(REGISTRY, "train", dataclasses.replace(
        train, cost=lambda cfg, spec, data: spec["size"]))
    monkeypatch.setattr(costs, "rate", lambda stage, kind: 10.0)
    cfg = make_cfg(tmp_path, stages=["prepare", "train"])
    specs, nodes = dict(cfg.model), plan.plan(cfg)
    with caplog.at_level(logging.INFO):
        assert runner.costliest_first(cfg, specs, tmp_path, nodes, ("train",)) == ["b", "a"]
    assert "estimated from stage_costs.csv" in caplog.text
    assert re.search(r"b +20 s \(train 20\)\n +a +10 s", caplog.text)
    for model, seconds in (("a", 900.0), ("b", 10.0)):  # another seed's units, measured
        unit = nodes["train"].units[model].dir.with_name("otherkey")
        unit.mkdir(parents=True)
        (unit / store.DONE).write_text(f'{{"seconds": {seconds}, "finished": "2026"}}')
    assert runner.costliest_first(cfg, specs, tmp_path, nodes, ("train",)) == ["a", "b"]
    (unit / store.DONE).write_text("{damaged")  # b has no measurement: the estimate again
    assert runner.costliest_first(cfg, specs, tmp_path, nodes, ("train",)) == ["b", "a"]


@pytest.fixture
def other_stages():
    """A registry of two made-up stages (a whole one, ``make``, and a per-model one, ``fit``,
    that reads it), restored in its order afterwards."""
    def make(cfg, out, inputs):
        (out / "made.txt").write_text("x")
        return {}

    def fit(cfg, name, spec, out, inputs):
        return {"model": name, "size": spec["size"]}

    def disk(cfg, spec, data):
        assert (data / "made.txt").is_file()  # the prepared data it declares
        return Disk("weights", f"weights {spec['size']:3d} MB", spec["size"])

    saved = dict(REGISTRY)
    REGISTRY.clear()
    REGISTRY.update(make=Stage("make", ("data",), run=make),
                    fit=Stage("fit", ("seed",), ("make",), unit=fit, data="make", disk=disk,
                              table="fitted models"))
    yield
    REGISTRY.clear()
    REGISTRY.update(saved)


def test_the_runner_knows_stages_only_by_their_declarations(tmp_path, other_stages,
                                                              monkeypatch, caplog):
    """Stages under other names run, and the runner finds their data, disk estimates and
    summary table through what they declare."""
    monkeypatch.setattr(runner, "costliest_first", lambda cfg, specs, *rest: sorted(specs))
    with caplog.at_level(logging.INFO):
        status = runner.run_pipeline(make_cfg(tmp_path, stages=["make", "fit"]))
    assert status == {"make": "ran", "fit a": "ran", "fit b": "ran"}
    assert "model a                      weights   1 MB" in caplog.text
    assert "disk: weights about 3 MB" in caplog.text
    assert "fitted models:\nmodel  size\n    a     1\n    b     2" in caplog.text
