"""The train stage on the smoke data: all six models with step 0 and the schedule; killing and
rerunning resumes to the same result as an uninterrupted run; changed checkpoints are refused."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import REPO, assert_gone_within

from pipeline.checkpoints import CheckpointError
from pipeline.schedule import checkpoint_schedule
from pipeline.stages import train

pytestmark = pytest.mark.slow
MODELS = {"lstm_lm_paper", "lstm_lm_deep", "transformer_lm_small", "tagger_pos",
          "tagger_semtag", "tagger_topic", "tagger_pos_shared_init", "transformer_nmt_small"}
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



def test_final_evaluation_matches_independent_counts(smoke_trained):
    """LM perplexity beats a uniform guess over the vocabulary; the tagger's majority baseline
    is the share on test of the train stream's most frequent tag, counted from the text files;
    BLEU is sacrebleu's on fairseq-generate's output, at the final and at the earlier step."""
    import sacrebleu

    _, _, _, train_units, prepared = smoke_trained
    metrics = {n: json.loads((train_units[n] / "eval.json").read_text()) for n in MODELS}
    vocab = sum(1 for _ in open(prepared / "lm" / "dict.lm.txt")) + 4
    for lm in ("lstm_lm_paper", "lstm_lm_deep", "transformer_lm_small"):
        assert 1 < metrics[lm]["test_ppl"] < vocab
    text = prepared / "lm" / "text"
    train_tags = Counter(t for line in open(text / "train.pos") for t in line.split())
    test_tags = [t for line in open(text / "test.pos") for t in line.split()]
    majority = train_tags.most_common(1)[0][0]
    share = sum(t == majority for t in test_tags) / len(test_tags)
    assert metrics["tagger_pos"]["majority_tag"] == majority
    assert metrics["tagger_pos"]["majority_baseline"] == round(share, 4)
    nmt = metrics["transformer_nmt_small"]
    refs = (prepared / "nmt" / "text" / "ref.test.de").read_text().splitlines()
    table = pd.read_csv(train_units["transformer_nmt_small"] / "checkpoints.csv")
    for step, key in ((int(table.step.max()), "test_bleu"), (nmt["earlier_step"],
                                                              "test_bleu_earlier")):
        out = train_units["transformer_nmt_small"] / "generate" / f"step_{step:07d}"
        hyps = {}
        for line in open(out / "generate-test.txt", encoding="utf-8"):
            if line.startswith("D-"):
                k, _, hyp = line.rstrip("\n").split("\t", 2)
                hyps[int(k[2:])] = hyp
        score = sacrebleu.corpus_bleu([hyps[i] for i in range(len(refs))], [refs]).score
        assert nmt[key] == round(score, 2)


def test_taggers_start_from_their_own_weights_and_the_control_from_the_lms(smoke_trained):
    _, _, _, train_units, _ = smoke_trained

    def step0(name):
        return torch.load(train_units[name] / "checkpoints" / "step_0000000.pt",
                          weights_only=False)["model"]

    lm, own, shared = step0("lstm_lm_paper"), step0("tagger_pos"), step0("tagger_pos_shared_init")
    common = [k for k in lm if k in own and lm[k].shape == own[k].shape]
    assert "decoder.embed_tokens.weight" in common
    assert all(torch.equal(lm[k], shared[k]) for k in common)  # the confound, in the control
    assert not any(torch.equal(lm[k], own[k]) for k in common if lm[k].numel() > 1)


def test_cached_train_unit_refuses_a_changed_checkpoint(smoke_trained, tmp_path):
    copy = tmp_path / "tagger_pos"
    shutil.copytree(smoke_trained[3]["tagger_pos"], copy)
    train.check(copy)
    victim = copy / "checkpoints" / "step_0000001.pt"
    victim.write_bytes(victim.read_bytes() + b"x")
    with pytest.raises(CheckpointError, match="step_0000001.pt: sha256"):
        train.check(copy)


# batches of 100 windows: 24 updates per smoke epoch, so 60 updates cross two epoch ends
# (fairseq saves there, and every 6 updates); lr_threshold 0.5 makes the second epoch end a
# plateau, so the learning rate shrinks there and a resume that skipped it would show
RESUME_ARGS = ["model=[lstm_lm_paper]", "model.lstm_lm_paper.max_update=60",
               "model.lstm_lm_paper.batch_size=100", "+train.fairseq.lr_threshold=0.5"]
# where each interruption lands: mid-interval in epoch 1 (resumes from update 6), in epoch 2
# (from 30, six batches into it), and two updates after the end of epoch 2 (from fairseq's
# end-of-epoch checkpoint at 48, saved before that epoch's learning rate step)
FAULTS = ("9:SIGINT:group", "33:SIGKILL:parent", "50:SIGKILL:group")


def _train(root, mirror, fault=None) -> subprocess.CompletedProcess:
    """A smoke train run of the resume test's LM in its own process group (as a terminal
    starts it), with PIPELINE_FAULT's signal after that update."""
    env = {**os.environ, **({"PIPELINE_FAULT": fault} if fault else {})}
    cmd = [sys.executable, "-m", "pipeline", "experiment=smoke", "stages=[train]",
           *RESUME_ARGS, f"mirror={mirror}", f"artifacts_dir={root}"]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env,
                          timeout=600, start_new_session=True)


def _unit(root):
    (unit,) = [d for d in (root / "smoke" / "train" / "lstm_lm_paper").iterdir() if d.is_dir()]
    return unit


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def test_interrupted_training_resumes_to_the_same_bytes(smoke_prepared, mirror, tmp_path):
    """One run stopped three times (Ctrl-C, SIGKILL of the pipeline alone, SIGKILL of the
    whole group) at updates in three epochs and rerun each time ends with every analysis
    checkpoint byte-identical to an undisturbed run's (in another artifacts dir, so paths
    differ too). Ctrl-C exits 130 and is not retried; the log says the run resumed."""
    art, _, _ = smoke_prepared
    clean, stopped = tmp_path / "clean", tmp_path / "stopped"
    for root in (clean, stopped):
        shutil.copytree(art / "smoke" / "prepare", root / "smoke" / "prepare")
    done = _train(clean, mirror)
    assert done.returncode == 0, done.stderr[-2000:]
    for fault in FAULTS:
        run = _train(stopped, mirror, fault)
        expected = {"SIGINT": 130, "SIGKILL": -9}[fault.split(":")[1]]
        assert run.returncode == expected, (fault, run.stdout[-3000:])
        assert "resuming once" not in run.stdout + run.stderr
        unit = stopped / "smoke" / "train" / "lstm_lm_paper"
        assert not any(unit.glob("*/.done.json")), fault
    resumed = _train(stopped, mirror)
    assert resumed.returncode == 0, resumed.stdout[-2000:]
    assert "resuming the partial result a stopped run left" in resumed.stdout
    a, b = _unit(clean), _unit(stopped)
    ta, tb = (pd.read_csv(u / "checkpoints.csv") for u in (a, b))
    assert list(ta.step) == checkpoint_schedule(60, 4, 3) and ta.epoch.max() == 3
    with open(a / "checkpoints" / "snapshots.jsonl") as f:
        assert {json.loads(line)["lr"] for line in f} == {20, 5}  # shrunk at the end of epoch 2
    pd.testing.assert_frame_equal(ta[["step", "epoch", "tokens_seen", "train_loss",
                                      "valid_loss", "sha256"]],
                                  tb[["step", "epoch", "tokens_seen", "train_loss",
                                      "valid_loss", "sha256"]])
    for f in ta.file:
        assert (a / "checkpoints" / f).read_bytes() == (b / "checkpoints" / f).read_bytes(), f
    log = (b / "train.log").read_text()
    assert log.count("Loaded checkpoint") == 3  # fairseq resumed from its checkpoint each time
    assert log.count("its learning rate step replayed") == 1  # the end-of-epoch resume


def test_a_killed_pipeline_leaves_no_process_behind(smoke_prepared, mirror, tmp_path):
    """SIGKILL of the pipeline process alone, while fairseq-train runs under it (forked from
    the job server): the training and the server go down too, at once (the training
    writes no further checkpoint: it would finish its 60 updates in seconds)."""
    art, _, _ = smoke_prepared
    shutil.copytree(art / "smoke" / "prepare", tmp_path / "smoke" / "prepare")
    cmd = [sys.executable, "-m", "pipeline", "experiment=smoke", "stages=[train]",
           *RESUME_ARGS, f"mirror={mirror}", f"artifacts_dir={tmp_path}"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    # no deadline: it waits for a checkpoint however slow the machine, and fails if the
    # pipeline exits before writing one
    while not any((tmp_path / "smoke" / "train").glob("lstm_lm_paper/*/checkpoints/*.pt")):
        assert proc.poll() is None, f"the pipeline exited ({proc.returncode}) before training"
        time.sleep(0.1)
    below = _descendants(proc.pid)
    assert below  # fairseq-train
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert_gone_within(below, 15, "still running after SIGKILL of their parent")
    (log,) = (tmp_path / "smoke" / "train").glob("lstm_lm_paper/*/train.log")
    assert "done training" not in log.read_text()
