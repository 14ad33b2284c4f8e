"""analysis.tables.sanity: S1 token counts, S2 seed against seed, S4 sensitivity."""

import numpy as np
import pytest
from synthstudy import (
    DIM,
    STEPS,
    _checkpoints,
    _write,
    small_settings,
    study_tables,
    synth_tokens,
)

from analysis.runs import ModelRun, Probe
from analysis.tables.sanity import seed_to_seed, sensitivity_verdicts


def test_token_count_sanity_falls_with_tokens():
    s1 = study_tables()["sanity_tokens"]
    g = s1[(s1.source == "gaussian") & (s1.metric == "svcca")].sort_values("n_tokens")
    assert g.value.iloc[0] > g.value.iloc[-1]  # CCA bias shrinks as N grows (true value 0)
    real = s1[s1.source == "init_vs_final"]
    assert set(real.layer) == {"embed", "lstm_1", "lstm_2"}


def _seed_store(root, tokens, finals: dict, rng):
    """A store whose last step holds ``finals`` and every other step random states."""
    reps = {step: {layer: (a if step == STEPS[-1] else rng.standard_normal(a.shape))
                   for layer, a in finals.items()} for step in STEPS}
    _write(root, tokens, reps)
    return root


def test_seed_to_seed_finds_shared_and_unshared_layers(tmp_path):
    """S2: a layer two seeds share up to a rotation is ~1 at the end, an unshared one is near
    its shuffled baseline, and two random initialisations are near it too."""
    tokens = synth_tokens()
    rng = np.random.default_rng(0)
    shared = rng.standard_normal((len(tokens), DIM))
    rotation, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
    probes = []
    for seed, same in ((1, shared), (2, shared @ rotation)):
        finals = {"embed": same, "lstm_1": rng.standard_normal((len(tokens), DIM))}
        root = _seed_store(tmp_path / str(seed), tokens, finals, rng)
        run = ModelRun("lm", "lstm_lm", seed, _checkpoints(), {"synth": root})
        probes.append(Probe.open(run, "synth"))
    t = seed_to_seed(probes, small_settings())
    assert set(zip(t.seed_a, t.seed_b, strict=True)) == {(1, 2)}
    assert set(t.checkpoint) == {"init", "final"} and set(t.layer) == {"embed", "lstm_1"}
    final = t[t.checkpoint == "final"].set_index(["layer", "metric"])
    for metric in ("svcca", "svcca_k20", "pwcca", "cka"):
        assert final.loc[("embed", metric), "value"] == pytest.approx(1.0, abs=1e-6)
        other = final.loc[("lstm_1", metric)]
        assert other.value < 0.2 and abs(other.value - other.baseline) < 0.1
    init = t[t.checkpoint == "init"]
    assert (init.value < 0.2).all()
    # one seed alone has no pairs
    assert seed_to_seed(probes[:1], small_settings()).empty


def test_s4_sensitivity_and_specificity_on_the_final_layers():
    t = study_tables()["sensitivity"]
    assert {"pcs_removed", "rotation_scaling"} == set(t.test)
    summary = sensitivity_verdicts(t, small_settings()).set_index(["test", "metric"])
    for metric in ("svcca", "cka", "procrustes"):
        assert summary.loc[("rotation_scaling", metric), "verdict"] == "PASS"
    for metric in ("cka", "procrustes", "rsa"):
        assert summary.loc[("pcs_removed", metric), "verdict"] == "PASS"
    assert summary.loc[("rotation_scaling", "rsa"), "verdict"] == "not invariant by definition"
    removed = t[(t.test == "pcs_removed") & (t.metric == "cka")]
    assert (removed[removed.j == 0].value > 1 - 1e-9).all()  # nothing removed: itself
    # full-rank CCA stays at 1 when one side loses directions the other still spans: a flat
    # line is not "lowered monotonically" (Ding et al. 2021 find CCA insensitive to this)
    for metric in ("pwcca", "svcca"):  # mean CCA over the fewer directions: all of them 1
        flat = t[(t.test == "pcs_removed") & (t.metric == metric)]
        assert (flat.value > 1 - 1e-6).all()
        assert summary.loc[("pcs_removed", metric), "verdict"] == "FAIL"
