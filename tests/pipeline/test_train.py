"""The train stage's parts that need no training: the earlier evaluation of a metric that must
stop rising is at the configured share of training, and that share is part of the key."""

import pandas as pd
from conftest import plan

from pipeline.stages import train


class Rising:
    """An adapter whose `rising` metric is the checkpoint's file name (what it was asked)."""

    rising = "test_bleu"

    def evaluate(self, spec, checkpoint, data, device):
        return {"test_bleu": checkpoint.name}


def test_a_rising_metric_is_also_evaluated_at_the_configured_share(monkeypatch, tmp_path):
    monkeypatch.setattr(train, "adapter", lambda spec: Rising())
    table = pd.DataFrame({"step": [0, 10, 20, 30, 40], "file": [f"s{i}.pt" for i in range(5)]})
    metrics = train.final_metrics({}, tmp_path, table, tmp_path, "cpu", 0.75)
    assert metrics == {"test_bleu": "s4.pt", "test_bleu_earlier": "s3.pt", "earlier_step": 30}
    assert train.final_metrics({}, tmp_path, table, tmp_path, "cpu", 0.5)["earlier_step"] == 20


def test_the_earlier_evaluation_is_in_the_train_key():
    base = plan("experiment=smoke")["train"].units
    moved = plan("experiment=smoke", "train.earlier_eval=0.5")["train"].units
    assert all(moved[m].key != base[m].key for m in base)
