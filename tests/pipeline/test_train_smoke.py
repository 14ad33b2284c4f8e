"""The train stage on the smoke data: all six models with step 0 and the schedule; killing and
rerunning resumes to the same result as an uninterrupted run; changed checkpoints are refused."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import pandas as pd
import pytest
import torch
from conftest import REPO, run_pipeline

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


def _train_args(art, mirror):
    return ["experiment=smoke", "stages=[train]", "model=[lstm_lm_paper]",
            "model.lstm_lm_paper.max_update=60", f"mirror={mirror}", f"artifacts_dir={art}"]


def _start_and_wait(root, mirror, step):
    """Start a training run in its own process group (as a terminal would) and return it
    once its snapshots reach ``step``."""
    cmd = [sys.executable, "-m", "pipeline", *_train_args(root, mirror)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        logs = list((root / "smoke" / "train").glob("lstm_lm_paper/*/checkpoints/"
                                                      "snapshots.jsonl"))
        if logs and any(json.loads(line)["step"] >= step for line in open(logs[0])):
            return proc
        assert proc.poll() is None, proc.stdout.read()[-2000:]
        time.sleep(0.2)
    raise AssertionError(f"training never reached step {step}")


def test_killed_or_interrupted_training_resumes_to_the_same_bytes(smoke_prepared, mirror,
                                                                  tmp_path):
    """SIGKILL, or Ctrl-C (SIGINT to the process group, as a terminal sends it), mid-training;
    the rerun finishes with checkpoints byte-identical to an undisturbed run's (its own
    artifacts dir, so paths differ too). Ctrl-C stops within 10 s and is not retried."""
    art, _, _ = smoke_prepared
    runs = {}
    for name in ("killed", "interrupted", "clean"):
        runs[name] = tmp_path / name
        shutil.copytree(art / "smoke" / "prepare", runs[name] / "smoke" / "prepare")
    clean = run_pipeline(*_train_args(runs["clean"], mirror))
    assert clean.returncode == 0, clean.stderr[-2000:]

    killed = _start_and_wait(runs["killed"], mirror, 20)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    interrupted = _start_and_wait(runs["interrupted"], mirror, 20)
    os.killpg(interrupted.pid, signal.SIGINT)
    try:
        interrupted.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(interrupted.pid, signal.SIGKILL)
        raise AssertionError("Ctrl-C did not stop the run within 10 s") from None
    output = interrupted.stdout.read()
    assert interrupted.returncode == 130, output[-2000:]
    assert "resuming once" not in output and "rerunning the same command resumes" in output
    for name in ("killed", "interrupted"):
        assert not any((runs[name] / "smoke" / "train").glob("lstm_lm_paper/*/.done.json"))
        resumed = run_pipeline(*_train_args(runs[name], mirror))
        assert resumed.returncode == 0, resumed.stderr[-2000:]

    def table(root):
        (d,) = (root / "smoke" / "train" / "lstm_lm_paper").glob("*/.done.json")
        return pd.read_csv(d.parent / "checkpoints.csv")

    clean_table = table(runs["clean"])
    assert list(clean_table.step) == checkpoint_schedule(60, 4, 3)
    cols = ["step", "epoch", "tokens_seen", "train_loss", "valid_loss", "sha256"]
    for name in ("killed", "interrupted"):
        pd.testing.assert_frame_equal(table(runs[name])[cols], clean_table[cols])
