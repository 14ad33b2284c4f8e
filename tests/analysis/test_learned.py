"""analysis.learned: the plateau verdict and the schedule's endpoint, on made-up tables."""

import configured
import numpy as np
import pandas as pd
from synthstudy import build_study

from analysis import repstore
from analysis.learned import endpoint, late_cka, learned
from analysis.runs import Probe
from analysis.tables.convergence import reference_late_cka


def table(lr, valid_loss):
    steps = np.linspace(0, 1000, len(lr)).astype(int)
    return pd.DataFrame({"step": steps, "lr": lr, "valid_loss": valid_loss,
                         "valid_ppl": np.exp2(valid_loss), "epochs": steps / 250})


def test_an_annealed_flat_endpoint_passes_and_a_constant_rate_does_not():
    steps = 11
    flat = np.r_[np.linspace(8, 5.02, steps - 2), 5.01, 5.0]
    annealed = endpoint(table(np.linspace(1, 0.005, steps), flat), configured.learned())
    assert annealed["endpoint_lr"] and annealed["lr_share"] == 0.005
    assert annealed["endpoint_loss"] and annealed["late_loss_change"] == abs(5.0 - 5.01) / 5.01
    constant = endpoint(table(np.full(steps, 20.0), np.linspace(8, 5, steps)), configured.learned())
    assert constant["lr_share"] == 1.0 and not constant["endpoint_lr"]
    assert not constant["endpoint_loss"]  # 5.3 -> 5.0 over the last 10%: 5.7%


def test_a_table_without_learning_rates_leaves_that_part_unmeasured():
    t = table(np.ones(5), np.linspace(8, 5, 5)).drop(columns="lr")
    out = endpoint(t, configured.learned())
    assert np.isnan(out["lr_share"]) and out["endpoint_lr"] is None  # not measurable


def test_the_plateau_verdict_names_what_failed():
    t = table(np.ones(5), np.linspace(8, 5, 5))
    out = learned(t, {"test_ppl": 100.0}, configured.learned())
    assert not out["learned"] and "still improving" in out["not_learned_because"]


def test_late_cka_reads_the_checkpoint_nearest_90_percent_and_the_lowest_layer():
    rows = [dict(model="lm", metric="cka", step_a=s, step_b=120, layer_a=layer, value=v)
            for s in (0, 60, 110, 120)
            for layer, v in (("embed", 0.999 if s >= 110 else 0.5),
                             ("lstm_1", 0.97 if s == 110 else 1.0 if s == 120 else 0.3))]
    table = pd.DataFrame(rows)
    out = late_cka(table, "lm", configured.learned())
    assert out["late_step_share"] == 110 / 120 and out["late_cka_min"] == 0.97
    assert not out["endpoint_cka"]
    table.loc[table.value == 0.97, "value"] = 0.99
    assert late_cka(table, "lm", configured.learned())["endpoint_cka"]
    tagger = late_cka(table, "tagger", configured.learned())  # not analysed over training
    assert np.isnan(tagger["late_cka_min"]) and tagger["endpoint_cka"] is None


def test_a_taggers_late_cka_reads_its_last_two_stored_checkpoints(tmp_path):
    """A tagger whose late checkpoint is unrelated to its last fails the endpoint's CKA part;
    one whose late and last checkpoints are the same passes at CKA 1."""
    runs = build_study(tmp_path)
    pos = next(r for r in runs if r.name == "tagger_pos")
    p = Probe.open(pos, "synth")
    rng = np.random.default_rng(7)
    repstore.write_arrays(p.root, p.steps[-2], "act", {
        layer: rng.standard_normal((len(p.tokens["lm"]), 8)) for layer in p.layers["lm"]})
    table = reference_late_cka(runs, configured.analysis())
    assert set(table.model) == {"tagger_pos", "tagger_semtag", "tagger_topic"}
    changed, same = (late_cka(table, name, configured.learned())
                     for name in ("tagger_pos", "tagger_topic"))
    assert changed["late_cka_min"] < 0.9 and changed["endpoint_cka"] is False
    assert np.isclose(same["late_cka_min"], 1.0) and same["endpoint_cka"] is True
