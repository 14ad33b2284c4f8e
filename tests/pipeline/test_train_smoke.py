"""The train stage on the smoke data: all six models with step 0 and the schedule; killing and
rerunning resumes to the same result as an uninterrupted run; changed checkpoints are refused."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from conftest import REPO, run_pipeline

from pipeline import stages
from pipeline.checkpoints import CheckpointError
from pipeline.schedule import checkpoint_schedule

pytestmark = pytest.mark.slow
MODELS = {"lstm_lm_paper", "lstm_lm_deep", "transformer_lm_small", "tagger_pos",
          "tagger_semtag", "tagger_topic", "transformer_nmt_small"}
LONGER = {"lstm_lm_paper", "lstm_lm_deep", "transformer_lm_small"}  # 30 updates in smoke


def test_all_models_have_step_zero_and_the_schedule(smoke_trained):
    _, _, result, train_units, _ = smoke_trained
    assert set(train_units) == MODELS
    assert "disk: checkpoints about" in result.stdout + result.stderr
    for name in MODELS:
        unit = train_units[name]
        assert (unit / ".done.json").is_file()
        table = pd.read_csv(unit / "checkpoints.csv")
        max_update = 30 if name in LONGER else 20
        assert list(table.step) == checkpoint_schedule(max_update, 4, 3)
        assert table.valid_loss.notna().all() and (table.bytes > 0).all()
        assert (table.tokens_seen.diff().dropna() > 0).all()
        first = torch.load(unit / "checkpoints" / table.file.iloc[0], weights_only=False)
        last = torch.load(unit / "checkpoints" / table.file.iloc[-1], weights_only=False)
        assert "last_optimizer_state" not in last  # analysis checkpoints hold weights only
        assert first["extra_state"]["step"] == 0
        assert any(not torch.equal(first["model"][k], last["model"][k]) for k in last["model"])
        assert (unit / "fairseq" / "checkpoint_last.pt").is_file()
    metrics = {n: json.loads((train_units[n] / "eval.json").read_text()) for n in MODELS}
    assert metrics["lstm_lm_paper"]["test_ppl"] > 1
    assert metrics["transformer_lm_small"]["test_ppl"] > 1
    assert 0 <= metrics["tagger_pos"]["test_accuracy"] <= 1
    assert 0 <= metrics["tagger_pos"]["majority_baseline"] <= 1
    assert metrics["transformer_nmt_small"]["test_bleu"] >= 0


def test_cached_train_unit_refuses_a_changed_checkpoint(smoke_trained, tmp_path):
    copy = tmp_path / "tagger_pos"
    shutil.copytree(smoke_trained[3]["tagger_pos"], copy)
    stages._verify(copy)
    victim = copy / "checkpoints" / "step_0000001.pt"
    victim.write_bytes(victim.read_bytes() + b"x")
    with pytest.raises(CheckpointError, match="step_0000001.pt: sha256"):
        stages._verify(copy)


def _train_args(art, mirror):
    return ["experiment=smoke", "stages=[train]", "model=[lstm_lm_paper]",
            "model.lstm_lm_paper.max_update=150", f"mirror={mirror}", f"artifacts_dir={art}"]


def test_killed_training_resumes_to_the_uninterrupted_result(smoke_prepared, mirror, tmp_path):
    art, _, _ = smoke_prepared
    runs = {}
    for name in ("killed", "clean"):
        runs[name] = tmp_path / name
        shutil.copytree(art / "smoke" / "prepare", runs[name] / "smoke" / "prepare")
    clean = run_pipeline(*_train_args(runs["clean"], mirror))
    assert clean.returncode == 0, clean.stderr[-2000:]

    cmd = [sys.executable, "-m", "pipeline", *_train_args(runs["killed"], mirror)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    log = None
    deadline = time.time() + 300
    while time.time() < deadline:
        logs = list((runs["killed"] / "smoke" / "train").glob("lstm_lm_paper/*/checkpoints/"
                                                                "snapshots.jsonl"))
        if logs and any(json.loads(line)["step"] >= 20 for line in open(logs[0])):
            log = logs[0]
            break
        time.sleep(0.2)
    assert log is not None, "training never reached step 20"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not any((runs["killed"] / "smoke" / "train").glob("lstm_lm_paper/*/.done.json"))

    resumed = run_pipeline(*_train_args(runs["killed"], mirror))
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    def table(root):
        (d,) = (root / "smoke" / "train" / "lstm_lm_paper").glob("*/.done.json")
        return pd.read_csv(d.parent / "checkpoints.csv")

    a, b = table(runs["killed"]), table(runs["clean"])
    cols = ["step", "epoch", "tokens_seen", "train_loss", "valid_loss"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert list(a.step) == checkpoint_schedule(150, 4, 3)
