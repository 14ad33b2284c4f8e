"""analysis.learned: the plateau verdict and the schedule's endpoint, on made-up tables."""

import numpy as np
import pandas as pd

from analysis.learned import endpoint, learned
from analysis.settings import Learned


def table(lr, valid_loss):
    steps = np.linspace(0, 1000, len(lr)).astype(int)
    return pd.DataFrame({"step": steps, "lr": lr, "valid_loss": valid_loss,
                         "valid_ppl": np.exp2(valid_loss), "epochs": steps / 250})


def test_an_annealed_flat_endpoint_passes_and_a_constant_rate_does_not():
    steps = 11
    flat = np.r_[np.linspace(8, 5.02, steps - 2), 5.01, 5.0]
    annealed = endpoint(table(np.linspace(1, 0.005, steps), flat), Learned())
    assert annealed["endpoint_lr"] and annealed["lr_share"] == 0.005
    assert annealed["endpoint_loss"] and annealed["late_loss_change"] == abs(5.0 - 5.01) / 5.01
    constant = endpoint(table(np.full(steps, 20.0), np.linspace(8, 5, steps)), Learned())
    assert constant["lr_share"] == 1.0 and not constant["endpoint_lr"]
    assert not constant["endpoint_loss"]  # 5.3 -> 5.0 over the last 10%: 5.7%


def test_a_table_without_learning_rates_fails_the_endpoint_visibly():
    t = table(np.ones(5), np.linspace(8, 5, 5)).drop(columns="lr")
    out = endpoint(t, Learned())
    assert np.isnan(out["lr_share"]) and not out["endpoint_lr"]


def test_the_plateau_verdict_names_what_failed():
    t = table(np.ones(5), np.linspace(8, 5, 5))
    out = learned(t, {"test_ppl": 100.0}, Learned())
    assert not out["learned"] and "still improving" in out["not_learned_because"]
