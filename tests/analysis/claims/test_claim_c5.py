"""analysis.claims.c5 on synthetic curves whose stage steps are known: in order (PASS), in the
reverse order (FAIL), and undefined (NA, with the reason)."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from analysis.claims import c5 as claim_c5
from analysis.settings import C5, Primary

STEPS = np.arange(0, 105, 5)  # 0, 5, ..., 100
CS = SimpleNamespace(c5=C5(share=0.9, bleu_threshold=10.0, bleu_set="test2016", lm_orders=[2, 3],
                           lexical="token_accuracy", freq_buckets=[10, 100], kl_order=3),
                     primary={"C5": Primary(metric="nmt_stages", min_effect=0.02)})


def ramp(start: float, end: float, v0: float, v1: float) -> np.ndarray:
    """v0 until step ``start``, linear to v1 at ``end``, v1 after."""
    return v0 + (v1 - v0) * np.clip((STEPS - start) / (end - start), 0, 1)


def peak(at: float) -> np.ndarray:
    return -4.0 - np.abs(STEPS - at) / 100


def unit(lm_at: float, lexical: tuple, reordering: tuple, kl_at: float = 10.0,
         bleu_max: float = 40.0, set_name: str = "test2016", aligner: str = "eflomal"
         ) -> pd.DataFrame:
    """One (model, seed, set)'s curves: BLEU reaches 10 at step 5 (bleu_max 40), the LM
    scores peak at ``lm_at``, the KL is smallest at ``kl_at``, token accuracy and the fuzzy
    reordering score follow :func:`ramp` (start, end, v0, v1)."""
    curves = {"bleu": np.minimum(STEPS * 2.0, bleu_max), "lm_2": peak(lm_at),
              "lm_3": peak(lm_at) - 1, "kl_3": 1.0 + np.abs(STEPS - kl_at) / 100,
              "token_accuracy": ramp(*lexical), "fuzzy_reordering": ramp(*reordering)}
    return pd.DataFrame([dict(step=int(s), measure=m, value=float(v[i]), set=set_name,
                              model="nmt", seed=1, sentences=150, aligner=aligner)
                         for m, v in curves.items() for i, s in enumerate(STEPS)])


def rows(*units: pd.DataFrame) -> dict:
    out = claim_c5.claim_c5({"nmt_stages": pd.concat(units, ignore_index=True)}, CS)
    return {(r["claim"], r["probe"]): r for r in out}


def test_stages_in_order_pass_with_the_gap_the_progress_rule_gives():
    """From step 5 (BLEU 10) on: accuracy 0.2 -> 0.6 over 5-40 makes 90% of its change at 40
    (0.56 first reached there on a 5-step grid: step 35 is at 30/35 = 86%); the fuzzy score
    falls 0.9 -> 0.8 over 5-80: 90% at 72.5, so step 75. LM peak at 5, KL minimum at 10:
    C5 = min(40 - 5, 75 - 40) / 100, the KL reading min(40 - 10, 35) / 100."""
    r = rows(unit(5, (5, 40, 0.2, 0.6), (5, 80, 0.9, 0.8)))
    c5, kl = r["C5", "test2016"], r["C5 KL (Chang & Bergen)", "test2016"]
    assert c5["verdict"] == "PASS" and c5["value"] == pytest.approx(0.35)
    assert kl["verdict"] == "PASS" and kl["value"] == pytest.approx(0.30)
    assert c5["metric"] == "nmt_stages" and c5["scope"] == "set=test2016" and c5["n"] == 150
    assert "peaks at 5" in c5["detail"] and "at 75" in c5["detail"]
    assert set(c5) >= {"claim", "model", "seed", "probe", "scope", "metric", "statistic",
                       "value", "threshold", "ci_low", "ci_high", "n", "p_value", "verdict",
                       "detail"}


def test_the_reverse_order_fails():
    """Reordering done first (0.9 -> 0.8 over 5-10: step 10), accuracy late (5-90: 90% at
    81.5, so 85), the LM peak at 95: min(85 - 95, 10 - 85) / 100 = -0.75."""
    r = rows(unit(95, (5, 90, 0.2, 0.6), (5, 10, 0.9, 0.8)))
    c5 = r["C5", "test2016"]
    assert c5["verdict"] == "FAIL" and c5["value"] == pytest.approx(-0.75)


def test_the_bleu_threshold_of_test2016_starts_every_set_and_ibm1_is_named():
    """The PUD set reads from test2016's threshold step (5), not its own BLEU, which never
    reaches 10; the IBM Model 1 fallback is named in the scope."""
    pud = unit(5, (5, 40, 0.2, 0.6), (5, 80, 0.9, 0.8), bleu_max=3.0, set_name="pud",
               aligner="ibm1")
    r = rows(unit(5, (5, 40, 0.2, 0.6), (5, 80, 0.9, 0.8)), pud)
    assert r["C5", "pud"]["verdict"] == "PASS"
    assert r["C5", "pud"]["scope"] == "set=pud, aligner=ibm1"


def test_undefined_stages_are_na_with_the_reason():
    never = rows(unit(5, (5, 40, 0.2, 0.6), (5, 80, 0.9, 0.8), bleu_max=8.0))
    for claim in ("C5", "C5 KL (Chang & Bergen)"):
        row = never[claim, "test2016"]
        assert row["verdict"] == "NA" and math.isnan(row["value"])
        assert "BLEU on test2016 never reaches 10 (at most 8)" in row["detail"]
    flat = rows(unit(5, (5, 40, 0.2, 0.6), (5, 80, 0.9, 0.9)))["C5", "test2016"]
    assert flat["verdict"] == "NA" and "the reordering progress" in flat["detail"]
    assert claim_c5.claim_c5({}, CS) == []


def test_a_falling_kendall_distance_is_no_longer_settled_at_its_first_step():
    """The old rule (>= share of the final value from some step on) called a falling curve
    settled at once; the progress rule finds where it makes 90% of its fall."""
    u = unit(5, (5, 40, 0.2, 0.6), (20, 60, 0.9, 0.5))
    steps = claim_c5.stage_steps(u, 5.0, CS.c5)
    assert steps["reordering"] == 60.0  # 0.9 -> 0.5 over 20-60: 0.54 first reached at 56
    assert steps["lexical"] == 40.0 and steps["lm_peak"] == 5.0 and steps["kl_min"] == 10.0
    assert claim_c5.translation_start(u[u.measure == "bleu"], 10.0) == 5.0
