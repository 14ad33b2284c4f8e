"""analysis.claims.c7 on constructed stability, tickets and convergence tables whose answers are
known: C7 (the first stable share against c7.by), C8 (the ticket against its controls at the
first round at least half sparse) and C9 (the layers' convergence against the stable step)."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from analysis.claims.c7 import claim_c7, claim_c8, claim_c9, commit_events
from analysis.claims.rows import FAIL, NA, PASS
from analysis.settings import C5, C7, C8, Primary
from analysis.tables import registry as T
from analysis.tables.rows import ALL

LAST = 1000
CS = SimpleNamespace(
    c7=C7(by=0.1), c8=C8(sparsity=0.5, tolerance=0.02), convergence_threshold=0.9,
    c5=C5(share=0.9, bleu_threshold=10.0, bleu_set="test2016", lm_orders=[2],
          lexical="token_accuracy", freq_buckets=[10], kl_order=2),
    primary={"C7": Primary(metric="valid_loss", min_effect=0.02),
             "C8": Primary(metric="valid_loss", min_effect=0.01),
             "C9": Primary(metric="svcca", min_effect=0.02)})


def stability(stable_from: float | None, model: str = "lm") -> pd.DataFrame:
    """Rewind points 0, 10, 20, 50, 100, 250: stable from ``stable_from`` on (None: never),
    one unstable point before it."""
    steps = [0, 10, 20, 50, 100, 250]
    return pd.DataFrame([dict(model=model, seed=1, step=s, share=s / LAST, measure="valid_loss",
                              stable=stable_from is not None and s >= stable_from)
                         for s in steps])


def test_c7_is_the_share_by_which_the_model_is_stable():
    (early,) = claim_c7(stability(50), CS)
    assert early["value"] == pytest.approx(0.1 - 0.05) and early["verdict"] == PASS
    (late,) = claim_c7(stability(250), CS)
    assert late["value"] == pytest.approx(0.1 - 0.25) and late["verdict"] == FAIL
    (never,) = claim_c7(stability(None), CS)
    assert never["value"] == pytest.approx(0.1 - 1.0) and "never stable" in never["detail"]


def tickets(d_imp: float, d_random: float, d_reinit: float | None, d_init: float = 0.1
            ) -> pd.DataFrame:
    """IMP at rounds 1-6 (sparsity 1 - 0.8^r) rewound to 0 and to 50, the controls at round
    4 (59%); each a relative change d (positive = worse) of the validation loss."""
    rows = []
    for r in range(1, 7):
        s = 1 - 0.8 ** r
        rows += [dict(method="imp", rewind="init", rewind_step=0, round=r, sparsity=s,
                      relative_change=d_init),
                 dict(method="imp", rewind="late", rewind_step=50, round=r, sparsity=s,
                      relative_change=d_imp if r == 4 else 0.5)]
    rows.append(dict(method="random", rewind="late", rewind_step=50, round=4, sparsity=0.59,
                     relative_change=d_random))
    if d_reinit is not None:
        rows.append(dict(method="reinit", rewind="late", rewind_step=0, round=4,
                         sparsity=0.59, relative_change=d_reinit))
    return pd.DataFrame(rows).assign(model="lm", seed=1, measure="valid_loss", stable=True)


def test_c8_reads_the_ticket_against_both_controls_at_the_first_round_half_sparse():
    late, k0 = claim_c8(tickets(0.01, 0.2, 0.1), CS)
    assert (late["claim"], k0["claim"]) == ("C8", "C8 k0")
    assert late["value"] == pytest.approx(min(0.02 - 0.01, 0.2 - 0.02, 0.1 - 0.02))
    assert late["verdict"] == PASS and "round 4" in late["detail"]
    assert k0["value"] == pytest.approx(0.02 - 0.1) and k0["verdict"] == FAIL
    # a control that matches too: the ticket is no better than chance
    (matching_control, _) = claim_c8(tickets(0.01, 0.2, 0.0), CS)
    assert matching_control["value"] == pytest.approx(-0.02)
    assert matching_control["verdict"] == FAIL
    (missing, _) = claim_c8(tickets(0.01, 0.2, None), CS)
    assert missing["verdict"] == NA and "control is missing" in missing["detail"]


def convergence(converged: dict[str, int]) -> pd.DataFrame:
    """Each layer's similarity to its final state: 0 until its step, then 1."""
    steps = np.arange(0, LAST + 1, 50)
    return pd.DataFrame([dict(model="lm", seed=1, probe="p", side="lm", metric="svcca",
                              tag=ALL, depth_a=d, layer_a=name, step_a=int(s),
                              value=float(s >= at))
                         for d, (name, at) in enumerate(converged.items()) for s in steps])


def test_c9_is_the_earliest_layer_convergence_after_the_stable_step():
    (after,) = claim_c9(convergence({"embed": 300, "lstm": 600}), stability(50), CS)
    assert after["value"] == pytest.approx((300 - 50) / LAST) and after["verdict"] == PASS
    (before,) = claim_c9(convergence({"embed": 0, "lstm": 600}), stability(50), CS)
    assert before["value"] == pytest.approx((0 - 50) / LAST) and before["verdict"] == FAIL
    (never,) = claim_c9(convergence({"embed": 300, "lstm": 600}), stability(None), CS)
    assert never["value"] == pytest.approx((300 - LAST) / LAST)  # stable only at the end


def test_the_commit_events_name_when_each_thing_happens():
    tables = {T.STABILITY: stability(50), T.TICKETS: tickets(0.01, 0.2, 0.1),
              T.CONVERGENCE: convergence({"embed": 300, "lstm": 600})}
    e = commit_events(tables, CS).set_index(["event", "label"])
    assert e.loc[("stable", ""), "step"] == 50
    assert e.loc[("ticket", ""), "step"] == 50  # the late ticket matches, the init one not
    assert e.loc[("layer", "p/lm/embed"), "share"] == pytest.approx(0.3)
    assert e.loc[("layer", "p/lm/lstm"), "step"] == 600


def test_c7_to_c9_pass_on_the_study_built_to_hold_and_fail_on_the_reversed_one():
    from synthstudy import reversed_claims, study_claims

    for claims, want in ((study_claims(), {PASS}), (reversed_claims(), {FAIL})):
        rows = claims[claims.claim.isin(["C7", "C8", "C9"])
                      & claims.metric.isin(["valid_loss", "svcca"])]
        assert set(rows.claim) == {"C7", "C8", "C9"}
        assert set(rows.verdict) == want, rows[["claim", "metric", "value", "detail"]]
