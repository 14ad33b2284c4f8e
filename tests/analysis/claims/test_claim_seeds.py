"""analysis.claims.seeds: the tests across seeds on seed means with known answers, Holm, the
four verdicts, and the answer table's primary and agreement rows."""

import dataclasses
import math

import configured
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.claims import seeds

CS = configured.claims()


def test_t_test_and_sign_flip_on_hand_computable_seed_means():
    """Seed means 1, 2, 3: mean 2, sd 1, t = 2 sqrt(3) on 2 df, whose two-sided p is
    1 - t / sqrt(2 + t^2) = 1 - sqrt(6/7) (the t distribution with 2 df in closed form); of
    the 8 sign patterns only the observed one reaches its mean, so the sign-flip p is 1/8."""
    out = seeds.seed_test(np.array([1.0, 2.0, 3.0]), 0.5, 0.95)
    assert out["n_seeds"] == 3 and out["effect"] == 2.0
    assert out["p"] == pytest.approx(1 - math.sqrt(6 / 7), rel=1e-9)
    assert out["p_signflip"] == pytest.approx(1 / 8) and out["p_signflip_min"] == 1 / 8
    q = 0.95 / math.sqrt(2 * 0.975 * 0.025)  # t_{0.975} on 2 df, closed form
    assert out["ci_low"] == pytest.approx(2 - q / math.sqrt(3), rel=1e-9)
    assert out["ci_high"] == pytest.approx(2 + q / math.sqrt(3), rel=1e-9)
    mixed = seeds.seed_test(np.array([1.0, -1.0, 2.0]), 0.5, 0.95)
    assert mixed["p_signflip"] == pytest.approx(3 / 8)  # +++, +-+ reach 2/3; --+ ... do not
    five = seeds.seed_test(np.arange(1.0, 6.0), 0.5, 0.95)
    assert five["p_signflip"] == pytest.approx(1 / 32) and five["p_signflip_min"] == 1 / 32


def test_one_seed_allows_no_test():
    out = seeds.seed_test(np.array([0.7]), 0.5, 0.95)
    assert out["n_seeds"] == 1 and out["effect"] == 0.7
    assert all(np.isnan(out[k]) for k in ("p", "ci_low", "p_signflip", "p_tost"))
    assert seeds.verdict(out, np.nan, np.nan, 0.5, 0.05) == (seeds.INCONCLUSIVE, seeds.ONE_SEED)


def test_tost_on_a_case_with_known_equivalence():
    """Seed means within ±0.02 of 0 against a smallest effect of 0.5: each one-sided test
    is a t-test against ∓0.5, and TOST's p is the larger of the two."""
    x = np.array([0.01, -0.01, 0.0, 0.02, -0.02])
    out = seeds.seed_test(x, 0.5, 0.95)
    se = x.std(ddof=1) / math.sqrt(len(x))
    expected = max(stats.t.sf((x.mean() + 0.5) / se, 4), stats.t.cdf((x.mean() - 0.5) / se, 4))
    assert out["p_tost"] == pytest.approx(expected, rel=1e-6) and out["p_tost"] < 1e-6
    wide = seeds.seed_test(np.array([0.6, -0.5, 0.45, -0.6, 0.3]), 0.5, 0.95)
    assert wide["p_tost"] > 0.05  # too spread to call equivalent within ±0.5


def test_holm_on_a_known_vector():
    p = pd.Series([0.01, 0.04, np.nan, 0.03])
    # sorted 0.01, 0.03, 0.04: x3 = 0.03, x2 = 0.06, x1 = 0.04 -> monotone 0.06
    assert seeds.holm(p).tolist()[:2] == pytest.approx([0.03, 0.06])
    assert np.isnan(seeds.holm(p)[2]) and seeds.holm(p)[3] == pytest.approx(0.06)


@pytest.mark.parametrize("low, high, p, p_tost, expected", [
    (0.6, 0.9, 0.001, 0.9, seeds.HOLDS),
    (0.2, 0.9, 0.001, 0.9, seeds.INCONCLUSIVE),   # significant, but maybe below the effect
    (-0.9, -0.6, 0.001, 0.9, seeds.REVERSED),
    (-0.1, 0.1, 0.5, 0.01, seeds.NO_EFFECT),
    (-0.3, 0.9, 0.3, 0.4, seeds.INCONCLUSIVE)])
def test_the_four_verdicts(low, high, p, p_tost, expected):
    test = dict(n_seeds=5, ci_low=low, ci_high=high)
    assert seeds.verdict(test, p, p_tost, 0.5, 0.05)[0] == expected


def unit_rows(claim: str, metric: str, per_seed: dict[int, list[float]]) -> list[dict]:
    return [dict(claim=claim, model="lm", seed=s, probe="p", scope=f"u{i}", metric=metric,
                 statistic="x", value=v, threshold=0.0, ci_low=np.nan, ci_high=np.nan, n=2,
                 p_value=np.nan, verdict="PASS" if v > 0 else "FAIL", detail="")
            for s, values in per_seed.items() for i, v in enumerate(values)]


def test_the_answer_tests_seed_means_of_the_primary_reading_with_holm():
    """Two units per seed: their mean is the seed's value; the primary metric decides, the
    other metric is agreement; Holm runs over the primary claims only."""
    cs = dataclasses.replace(CS, primary={"C1": CS.primary["C1"], "C3": CS.primary["C3"]})
    c1_metric, c3_metric = cs.primary["C1"].metric, cs.primary["C3"].metric
    strong = {s: [0.8 + 0.01 * s, 0.9 + 0.01 * s] for s in range(1, 6)}
    weak = {s: [0.01 * (-1) ** s, 0.0] for s in range(1, 6)}
    rows = (unit_rows("C1", c1_metric, strong) + unit_rows("C1", "other", weak)
            + unit_rows("C3", c3_metric, weak) + unit_rows("C3 rec", c3_metric, strong))
    rows.append({**rows[0], "seed": 1, "scope": "na", "value": np.nan, "verdict": "NA"})
    a = seeds.answer(pd.DataFrame(rows), cs).set_index(["claim", "metric"])
    c1 = a.loc[("C1", c1_metric)]
    assert c1.role == seeds.PRIMARY and c1.n_seeds == 5 and c1.units == 10  # NA left out
    means = [np.mean(v) for v in strong.values()]
    assert c1.effect == pytest.approx(np.mean(means))
    assert c1.p == pytest.approx(stats.ttest_1samp(means, 0).pvalue)
    primaries = [a.loc[("C1", c1_metric), "p"], a.loc[("C3", c3_metric), "p"]]
    assert c1.p_holm == pytest.approx(min(1, 2 * min(primaries)))
    assert c1.verdict == seeds.HOLDS and c1.p_signflip == pytest.approx(1 / 32)
    assert c1.agreement == f"0 of 1 other metrics: {seeds.HOLDS}"
    other = a.loc[("C1", "other")]
    assert other.role == seeds.AGREEMENT and np.isnan(other.p_holm)
    assert a.loc[("C3", c3_metric), "verdict"] == seeds.NO_EFFECT  # within ±0.02 of 0
    assert a.loc[("C3 rec", c3_metric), "role"] == seeds.AGREEMENT
    one = seeds.answer(pd.DataFrame(unit_rows("C1", c1_metric, {1: [0.9]})), cs)
    assert one.set_index("claim").loc["C1", "reason"] == seeds.ONE_SEED
    assert one.set_index("claim").loc["C3", "verdict"] == seeds.UNTESTED
    assert "run scripts/reproduce.sh" in seeds.seeds_sentence(one)
    assert "1/32" in seeds.seeds_sentence(a.reset_index())
