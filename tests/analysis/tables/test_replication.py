"""analysis.tables.replication: the learned and finished tests on Gaussian "seeds" whose final
states are a rotation plus noise of one another (learned) or unrelated (not learned)."""

import dataclasses

import configured
import numpy as np
import pandas as pd
import pytest

from analysis.comparisons import compare, full_basis, metric_specs
from analysis.tables.replication import finished_test, learned_layers, learned_test

N, D, SEEDS = 600, 20, (1, 2, 3, 4)


def settings():
    s = configured.analysis()
    return dataclasses.replace(s, metrics=["svcca", "cka"], baseline_shuffles=4)


def states(related: bool, rng) -> dict:
    """Each seed's initial and final layer: inits independent; finals a random rotation plus
    noise of one shared state (related) or independent too."""
    shared = rng.standard_normal((N, D))
    out = {}
    for s in SEEDS:
        q, _ = np.linalg.qr(rng.standard_normal((D, D)))
        final = (shared @ q + 0.3 * rng.standard_normal((N, D)) if related
                 else rng.standard_normal((N, D)))
        out[s] = {"init": rng.standard_normal((N, D)), "final": final}
    return out


def seeds_table(layer_states: dict, st) -> pd.DataFrame:
    specs = metric_specs(st)
    rows = []
    for i, a in enumerate(SEEDS):
        for b in SEEDS[i + 1:]:
            for point in ("init", "final"):
                for r in compare(full_basis(layer_states[a][point]),
                                 full_basis(layer_states[b][point]), specs,
                                 st.baseline_shuffles, 7):
                    rows.append(dict(model="lm", probe="p", side="lm", layer="lstm_1",
                                     seed_a=a, seed_b=b, checkpoint=point, **r))
    return pd.DataFrame(rows)


def convergence(late_value: float) -> list[pd.DataFrame]:
    """Each seed's layer at 0, 45, 90 and 100 steps vs its final state."""
    return [pd.DataFrame([dict(model="lm", seed=s, probe="p", side="lm", layer_a="lstm_1",
                               metric=m, tag="all", step_a=step, step_b=100,
                               value={0: 0.2, 45: 0.6, 90: late_value, 100: 1.0}[step])
                          for m in ("svcca", "cka") for step in (0, 45, 90, 100)])
            for s in SEEDS]


@pytest.mark.parametrize("related, learned", [(True, True), (False, False)])
def test_learned_passes_for_related_seeds_and_fails_for_unrelated(related, learned):
    st = settings()
    table = learned_layers(seeds_table(states(related, np.random.default_rng(0)), st),
                           convergence(0.999), st)
    assert set(table.metric) == {"svcca", "cka"} and (table.pairs == 6).all()
    assert (table.learned == learned).all(), table[["metric", "gain", "gain_low"]]
    if not related:  # no gain beyond chance: the interval straddles 0
        assert ((table.gain_low < 0) & (table.gain_high > 0)).all()


def test_finished_compares_the_late_change_with_the_seeds_spread():
    st = settings()
    s2 = seeds_table(states(True, np.random.default_rng(1)), st)
    spread = 1 - s2[s2.checkpoint == "final"].groupby("metric").value.mean()
    eps = st.learned.epsilon
    for metric in ("svcca", "cka"):  # a late change just inside and just outside the limit
        for factor, expected in ((0.9, True), (1.1, False)):
            late = 1 - factor * eps * spread[metric]
            table = learned_layers(s2, convergence(late), st).set_index("metric")
            assert table.loc[metric, "late_share"] == 0.9
            assert table.loc[metric, "late_change"] == pytest.approx(1 - late)
            assert bool(table.loc[metric, "finished"]) is expected, (metric, factor)


def test_the_tests_on_known_numbers():
    out = learned_test(np.array([0.9, 0.8]), np.array([0.2, 0.2]), np.array([0.1, 0.1]),
                       np.array([0.1, 0.1]), 0.05, 200, 0.95, 0)
    assert out["gain"] == pytest.approx(0.65) and out["learned"]
    assert 0.6 - 1e-12 <= out["gain_low"] <= out["gain_high"] <= 0.7 + 1e-12
    done = finished_test(np.array([0.99, 0.97]), np.array([0.8, 0.8]), 0.25)
    assert done["late_change"] == pytest.approx(0.02) and done["seed_spread"] == pytest.approx(0.2)
    assert done["finished"]  # 0.02 <= 0.25 x 0.2
    assert learned_test([], [], [], [], 0.05, 200, 0.95, 0)["learned"] is None


def test_a_model_without_an_initial_checkpoint_is_not_tested():
    st = settings()
    s2 = seeds_table(states(True, np.random.default_rng(2)), st)
    table = learned_layers(s2[s2.checkpoint == "final"], [], st)
    assert table.learned.isna().all() and table.finished.isna().all()
    assert (table.reason == "no initial checkpoint extracted; not analysed over training").all()
