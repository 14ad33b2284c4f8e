"""Branching (pipeline.stages.train.branch_model): a child trained from a parent's full
checkpoint at update k with the parent's data seed writes the parent's next checkpoints byte for
byte; with another data seed it starts from the same weights and sees other batches. The data
seed alone changes the data order, not the initialisation."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import run_pipeline

from pipeline.stages import train

pytestmark = pytest.mark.slow
LM = "lstm_lm_paper"
ARGS = ["experiment=smoke", "stages=[train]", f"model=[{LM}]", "train.rewind=[0,0.3]"]


def _trained(art: Path, root: Path, mirror: Path, *extra: str) -> Path:
    """The smoke LM trained in ``root`` (smoke's prepare copied in) with ``extra``; its unit."""
    if not (root / "smoke" / "prepare").exists():
        shutil.copytree(art / "smoke" / "prepare", root / "smoke" / "prepare")
    done = run_pipeline(*ARGS, *extra, f"mirror={mirror}", f"artifacts_dir={root}")
    assert done.returncode == 0, done.stderr[-3000:]
    (unit,) = [d for d in (root / "smoke" / "train" / LM).iterdir()
               if (d / ".done.json").is_file() and json.loads(
                   (d / ".done.json").read_text())["config"]["data_seed"] == _seed(extra)]
    return unit


def _seed(extra) -> int:
    return next((int(a.split("=")[1]) for a in extra if a.startswith("data_seed=")), 1)


@pytest.fixture(scope="module")
def parent(smoke_prepared, mirror, tmp_path_factory) -> Path:
    """The smoke LM trained with full checkpoints at 0 and 30% of training."""
    art, _, _ = smoke_prepared
    return _trained(art, tmp_path_factory.mktemp("branch"), mirror)


def _records(unit: Path) -> dict[int, dict]:
    with open(unit / "checkpoints" / "snapshots.jsonl") as f:
        return {r["step"]: r for r in map(json.loads, f)}


def _branch(parent: Path, k: int, out: Path, data_seed: int, steps: list[int]) -> pd.DataFrame:
    done = json.loads((parent / ".done.json").read_text())
    config = {key.split(".", 1)[1]: v for key, v in done["config"].items()
              if key.startswith("train.")}
    settings = train.TrainConfig(device="cpu", threads=1, parallel=1,
                                 schedule=train.Schedule(**config["schedule"]),
                                 max_valid_steps=config["max_valid_steps"],
                                 fairseq=config["fairseq"],
                                 earlier_eval=config["earlier_eval"], rewind=config["rewind"])
    prepared = next(d for d in (parent.parents[2] / "prepare").iterdir() if d.is_dir())
    return train.branch_model(LM, done["config"]["model"], prepared, parent, k, out, 1,
                              data_seed, settings, steps)


def test_a_branch_with_the_parents_data_seed_writes_its_checkpoints_byte_for_byte(
        parent, tmp_path):
    kept = train.rewind_table(parent)
    table = pd.read_csv(parent / "checkpoints.csv")
    last = int(table.step.iloc[-1])
    assert list(kept.step) == [0, round(0.3 * last)]
    for k in kept.step:
        later = [int(s) for s in table.step if s > k]
        child = tmp_path / f"same_{k}"
        _branch(parent, int(k), child, 1, later)
        for step in later:  # across the end of the first epoch too
            name = f"step_{step:07d}.pt"
            assert (child / "checkpoints" / name).read_bytes() == (
                parent / "checkpoints" / name).read_bytes(), (k, step)
        assert not list((child / "fairseq").glob("*.pt"))  # a finished child keeps no state


def test_a_branch_with_another_data_seed_starts_from_the_same_weights_on_other_batches(
        parent, tmp_path):
    k = int(train.rewind_table(parent).step.iloc[-1])
    nxt = int(next(s for s in pd.read_csv(parent / "checkpoints.csv").step if s > k))
    child = tmp_path / "other"
    _branch(parent, k, child, 2, [k, nxt])
    start = torch.load(train.rewind_checkpoint(parent, k), weights_only=False)["model"]
    first = torch.load(child / "checkpoints" / f"step_{k:07d}.pt", weights_only=False)["model"]
    assert start.keys() == first.keys()
    assert all(torch.equal(start[n], first[n]) for n in start)
    mine, theirs = _records(child)[nxt], _records(parent)[nxt]
    assert mine["batch"] != theirs["batch"]
    assert mine["valid_loss"] != theirs["valid_loss"]


def test_the_data_seed_changes_the_data_order_not_the_initialisation(
        parent, smoke_prepared, mirror):
    art, _, _ = smoke_prepared
    one = parent
    two = _trained(art, parent.parents[3], mirror, "data_seed=2")
    assert one != two
    assert (one / "checkpoints" / "step_0000000.pt").read_bytes() == (
        two / "checkpoints" / "step_0000000.pt").read_bytes()
    a, b = _records(one), _records(two)
    assert a[1]["batch"] != b[1]["batch"]
    assert json.loads((two / ".done.json").read_text())["summary"]["data_seed"] == 2
