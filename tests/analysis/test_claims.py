"""analysis.claims: each claim passes on data built to satisfy it and fails on its opposite."""

import configured
import numpy as np
import pandas as pd
import pytest
from synthstudy import reversed_claims, small_settings, study_claims, study_tables

from analysis import claims

CS = configured.claims()  # the settings study_claims() evaluates with
SIM_METRICS = {"svcca", "svcca_k20", "svcca_k50", "pwcca", "cka", "cka_debiased", "procrustes",
               "rsa"}


def test_c1_passes_when_lower_layers_converge_first():
    c = study_claims()
    c1 = c[c.claim == "C1"]
    # the LM and the NMT encoder; the decoder is not part of C1
    assert set(c1.scope) == {"stack=lm", "stack=source"}
    assert set(c1.metric) == SIM_METRICS
    assert (c1.verdict == "PASS").all()


def test_c1_fails_when_upper_layers_converge_first():
    c = reversed_claims()
    c1 = c[c.claim == "C1"]
    assert (c1.verdict == "FAIL").all()
    assert (c1.value < 0).all()  # depth and convergence step anti-correlated


def test_c3_passes_and_fails_by_construction():
    good = study_claims()
    bad = reversed_claims()
    for table, expected in ((good, "PASS"), (bad, "FAIL")):
        c3 = table[table.claim == "C3"]
        assert set(c3.scope) == {"tagger=tagger_pos", "tagger=tagger_semtag",
                                 "tagger=tagger_topic"}
        assert set(c3.metric) == SIM_METRICS
        assert (c3.verdict == expected).all()
        for half in ("C3 rec", "C3 emb"):  # the study builds both halves (or reverses both)
            h = table[table.claim == half]
            assert len(h) == len(c3) and (h.verdict == expected).all(), half


def test_c3_reports_a_half_that_holds_when_the_other_does_not():
    """The recurrent layer rises towards the tagger, the embedding rises too: the combined
    claim fails, its recurrent half passes, its embedding half fails; a shared-init tagger's
    halves carry their own claim names."""
    rows = [dict(model="lm", seed=1, probe="p", model_b=b, metric="cka", depth_a=d,
                 layer_a=layer, step_a=s, value=v, shared_init=b.endswith("shared"),
                 p_increase=0.01, p_decrease=0.9)
            for b in ("tagger", "tagger_shared")
            for d, layer, values in ((0, "embed", (0.5, 0.6)), (1, "lstm_1", (0.2, 0.7)))
            for s, v in zip((0, 100), values, strict=True)]
    c = pd.DataFrame(claims.claim_c3(pd.DataFrame(rows), CS)).set_index("claim")
    assert c.loc["C3"].verdict.tolist() == ["FAIL", "FAIL"]
    assert c.loc["C3 rec", "verdict"] == "PASS" and c.loc["C3 rec", "p_value"] == 0.01
    assert c.loc["C3 emb", "verdict"] == "FAIL" and c.loc["C3 emb", "p_value"] == 0.9
    assert c.loc["C3 rec (shared init)", "value"] == pytest.approx(0.5)
    assert c.loc["C3 emb (shared init)", "value"] == pytest.approx(-0.1)
    summary = claims.answer(pd.DataFrame(claims.claim_c3(pd.DataFrame(rows), CS)), CS)
    overall = summary[summary.metric == "all"].set_index("claim")
    assert overall.loc["C3 rec", "verdict"] == "holds"
    assert overall.loc["C3 emb", "verdict"] == "does not hold"
    assert overall.loc["C3 rec (shared init)", "figure"] == "f4_tagger"
    assert overall.loc["C3 emb (shared init)", "statement"].startswith("the embedding")


def test_c4_passes_and_fails_by_construction():
    good = study_claims()
    bad = reversed_claims()
    g, b = good[good.claim == "C4"], bad[bad.claim == "C4"]
    assert len(g) == 3 and (g.verdict == "PASS").all() and (g.ci_low > 0).all()
    assert len(b) == 3 and (b.verdict == "FAIL").all() and (b.ci_high < 0).all()
    kind = good[good.claim.str.startswith("C4 ")]  # the same rows, per architecture
    fc = study_tables()["function_content"]
    kinds = dict(zip(fc.model, fc.kind, strict=True))
    assert set(kind.claim) == {f"C4 {kinds[m]}" for m in g.model}
    assert kind.drop(columns="claim").reset_index(drop=True).equals(
        g.drop(columns="claim").reset_index(drop=True))
    assert claims.statement(kind.claim.iloc[0]).startswith(claims.CLAIMS["C4"] + " (")


def family_table(pos_arrive: int, topic_arrive: int | None) -> pd.DataFrame:
    """A pooled family table for one LM layer: similarity 0.5 until arrival, then 1."""
    steps = [0, 1, 2, 4, 8]
    rows = []
    for fam, arrive in (("pos", pos_arrive), ("topic", topic_arrive)):
        if arrive is None:
            continue
        for s in steps:
            rows.append(dict(model="lm", kind="lm", seed=1, probe="p", layer_a="lstm_1",
                             metric="cka", tag="pooled", tag_family=fam, step_a=s,
                             value=1.0 if s >= arrive else 0.5))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("pos, topic, expected", [(1, 4, "PASS"), (4, 1, "FAIL"),
                                                  (2, 2, "FAIL"), (2, None, "NA")])
def test_c2_compares_pos_and_topic_stabilisation(pos, topic, expected):
    rows = claims.claim_c2(family_table(pos, topic), CS, metrics=["cka", "svcca"])
    by_metric = {r["metric"]: r for r in rows}
    assert by_metric["cka"]["verdict"] == expected
    assert by_metric["svcca"]["verdict"] == "NA"  # not computed on tag subsets: said so


def test_c2_size_compares_pos_with_random_subsets_of_its_size():
    """The size control: a random family of the same N tokens arriving after POS passes; on
    probes without topic labels (whose subsets C2 compares) nothing is claimed."""
    table = family_table(1, 2)
    random = table[table.tag_family == "pos"].assign(
        tag_family="random", value=lambda d: np.where(d.step_a >= 4, 1.0, 0.5))
    rows = claims.claim_c2(pd.concat([table, random]), CS, other="random")
    (row,) = rows
    assert row["claim"] == "C2 size" and row["verdict"] == "PASS" and row["value"] == 1 - 4
    assert row["statistic"] == "step_pos - step_random"
    assert claims.claim_c2(pd.concat([table[table.tag_family == "pos"], random]), CS,
                           other="random") == []
    study = study_claims()
    assert (study.claim == "C2 size").any()


def test_crossing_step():
    steps, vals = [0, 1, 2, 4, 8], [0.2, 0.95, 0.7, 0.93, 1.0]
    assert claims.crossing_step(steps, vals, 0.9, sustained=True) == 4
    assert claims.crossing_step(steps, vals, 0.9, sustained=False) == 1
    assert np.isnan(claims.crossing_step(steps, [0.1] * 5, 0.9))
    assert claims.crossing_step(steps[::-1], vals[::-1], 0.9) == 4  # order independent
    assert np.isnan(claims.crossing_step(steps, [1, 1, 1, 1, np.nan], 0.9))


def test_summary_rules():
    rows = pd.DataFrame(dict(claim=["C1", "C1", "C2", "C3"], metric=["a", "a", "a", "a"],
                             verdict=["PASS", "FAIL", "NA", "PASS"]))
    s = claims.summarize(rows).set_index("claim")
    assert s.loc["C1", "verdict"] == "FAIL" and s.loc["C1", "n_pass"] == 1
    assert s.loc["C2", "verdict"] == "NA"
    assert s.loc["C3", "verdict"] == "PASS"


def test_claim_settings_are_read_from_the_analysis_config():
    from omegaconf import OmegaConf

    from analysis.settings import AnalysisSettings
    from pipeline.config import typed

    cfg = OmegaConf.merge(OmegaConf.structured(configured.analysis()),
                          {"claims": {"convergence_threshold": 0.8, "c1": {"min_rho": 0.3},
                                      "c4": {"sides": ["lm", "target"]}}})
    cs = typed(cfg, AnalysisSettings).claims
    assert cs.convergence_threshold == 0.8 and cs.c1.min_rho == 0.3
    assert cs.c4.sides == ["lm", "target"] and cs.c3.margin == configured.claims().c3.margin


def test_c1_p_value_is_exact_over_layer_orderings():
    assert claims.spearman_p([0, 1, 2], [1.0, 2.0, 3.0], 1.0) == pytest.approx(1 / 6)
    assert claims.spearman_p([0, 1], [1.0, 5.0], 1.0) == 0.5  # 2 layers cannot be significant
    assert np.isnan(claims.spearman_p([0, 1], [1.0, 1.0], np.nan))


def test_p_values_are_small_where_the_study_builds_the_effect_and_large_where_it_reverses():
    good = study_claims()
    bad = reversed_claims()
    for claim in ("C3", "C4"):
        g, b = good[good.claim == claim], bad[bad.claim == claim]
        assert g.p_value.notna().all() and b.p_value.notna().all(), claim
        assert (g.p_value < 0.05).mean() > 0.5 and (b.p_value > 0.5).mean() > 0.5, claim
    c2 = good[(good.claim == "C2") & good.verdict.isin(["PASS", "FAIL"])]
    assert c2.p_value.between(0, 1).all() and len(c2)


def test_the_pooled_test_is_exact_for_few_units_and_sampled_for_many():
    assert claims.sign_flip_p([1.0, 2.0, 3.0], 14, 100, 0) == 1 / 8  # all 8 sign patterns
    assert claims.sign_flip_p([1.0, -1.0], 14, 100, 0) == 3 / 4
    many = np.ones(30)
    assert claims.sign_flip_p(many, 14, 999, 0) == 1 / 1000  # only the observed one reaches it
    assert np.isnan(claims.sign_flip_p([], 14, 100, 0))


def unit_rows(claim: str, values) -> pd.DataFrame:
    return pd.DataFrame([dict(claim=claim, model="lm", seed=s, probe="p", scope=f"u{i}",
                              metric="cka", statistic="x", value=v, threshold=0.0,
                              ci_low=np.nan, ci_high=np.nan, n=2, p_value=0.5,
                              verdict="PASS" if claims.SIGN.get(claim, 1) * v > 0 else "FAIL",
                              detail="")
                         for s in (1, 2, 3) for i, v in enumerate(values)])


def test_robust_reads_the_pooled_p_over_every_unit_and_seed():
    """Two units per seed over three seeds: six units, exact p 1/64, robust although every
    unit's own p is 0.5; one seed alone (two units, p 1/4) is not. C2's statistic counts
    negative as the claim's direction."""
    pooled = claims.pooled_test(unit_rows("C3", [0.1, 0.2]), CS).iloc[0]
    assert pooled.pooled_units == 6 and pooled.pooled_p == 1 / 64
    answer = claims.answer(unit_rows("C3", [0.1, 0.2]), CS).set_index("metric")
    assert answer.loc["cka", "robust"] and answer.loc["all", "robust"]
    one_seed = unit_rows("C3", [0.1, 0.2]).query("seed == 1")
    assert not claims.answer(one_seed, CS).set_index("metric").loc["all", "robust"]
    c2 = claims.pooled_test(unit_rows("C2", [-3.0, -1.0]), CS).iloc[0]
    assert c2.pooled_effect == 2.0 and c2.pooled_p == 1 / 64
    study = claims.answer(study_claims(), CS)
    assert not study.set_index(["claim", "metric"]).loc[("C1", "all"), "robust"]  # one unit


def test_stable_step_is_where_a_curve_stays_near_its_end():
    assert claims.stable_step([0, 1, 2, 4, 8], [0.0, 0.5, 0.95, 1.0, 1.0], 0.1) == 2
    assert claims.stable_step([0, 1, 2, 4, 8], [0.0, 1.0, 0.0, 0.5, 1.0], 0.1) == 8
    assert claims.stable_step([0, 1], [0.3, 0.3], 0.1) == 0  # flat: stable throughout
    assert np.isnan(claims.stable_step([0, 1], [0.3, np.nan], 0.1))


def tagger_curves(pos_arrive: int, topic_arrive: int) -> pd.DataFrame:
    """LM-vs-tagger similarity of one layer: 0.2 until each tagger's arrival, then 0.6."""
    steps = [0, 1, 2, 4, 8, 16]
    return pd.DataFrame([
        dict(model="lm", seed=1, probe="p", side="lm", layer_a="lstm_1", metric="cka",
             model_b=f"tagger_{fam}", tag_family=fam, shared_init=shared, step_a=s,
             value=0.6 if s >= arrive else 0.2)
        for fam, arrive in (("pos", pos_arrive), ("topic", topic_arrive))
        for shared in (False, True) for s in steps
        if not (shared and fam == "topic")])  # a shared-init control is left out


def test_c2b_reads_the_taggers_pos_before_topic():
    (early,) = claims.claim_c2b(tagger_curves(2, 8), CS)
    assert early["verdict"] == "PASS" and early["value"] == 2 - 8
    assert early["detail"] == "vs POS tagger stable from 2, vs topic from 8"
    (late,) = claims.claim_c2b(tagger_curves(8, 2), CS)
    assert late["verdict"] == "FAIL"
    only_pos = tagger_curves(2, 8)
    (na,) = claims.claim_c2b(only_pos[only_pos.tag_family == "pos"], CS)
    assert na["verdict"] == "NA"
    study = study_claims()
    assert (study.claim == "C2b").any()


def test_c5_passes_when_the_stages_come_in_order_and_fails_when_reversed():
    """The synthetic translation: KL smallest at step 2, lexical accuracy settled from 4,
    reordering from 8 (in order) or reordering from 1, lexical from 4, KL smallest at 16."""
    good = study_claims()
    bad = reversed_claims()
    g, b = good[good.claim == "C5"], bad[bad.claim == "C5"]
    assert len(g) == len(b) == 1
    assert g.verdict.iloc[0] == "PASS" and g.value.iloc[0] == pytest.approx(min(4 - 2, 8 - 4) / 16)
    assert "smallest at 2" in g.detail.iloc[0] and "from 8" in g.detail.iloc[0]
    assert g.p_value.iloc[0] < 0.05 and g.ci_low.iloc[0] > 0
    assert b.verdict.iloc[0] == "FAIL" and b.value.iloc[0] == pytest.approx(min(4 - 16, 1 - 4) / 16)
    assert b.p_value.iloc[0] > 0.5


def test_c5_is_na_with_its_reason_when_a_stage_is_undefined():
    from synthstudy import translation_tables

    tables = translation_tables()
    curves = tables["nmt_stages"]
    flat = curves.assign(value=np.where(curves.measure == "lexical_accuracy", 0.0, curves.value))
    rows = claims.claim_c5(flat, None, small_settings().claims)
    assert [r["verdict"] for r in rows] == ["NA"]
    assert "lexical_accuracy undefined" in rows[0]["detail"]


def test_a_permuted_familys_step_pools_its_rows_by_token_weight():
    """C2's null: each family's curve is the token-weighted mean of its tags' rows at each
    step (a step where it has no row is skipped, a NaN value adds nothing), as a pandas
    regroup of the rows gives. Values are eighths and tokens integers, so both sums are exact."""
    rng = np.random.default_rng(0)
    step = rng.choice([0.0, 10, 20, 40, 80], 400)  # values below 0.5 before 20, then above
    rows = pd.DataFrame(dict(tag=rng.choice(list("abcdefg"), 400), step_a=step,
                             value=np.where(step < 20, rng.integers(0, 4, 400),
                                            rng.integers(4, 9, 400)) / 8,
                             tag_tokens=rng.integers(1, 30, 400).astype(float)))
    rows.loc[rows.index[::37], "value"] = np.nan
    rows = rows[~((rows.tag.isin(["a", "b"])) & (rows.step_a == 40))]  # a step with no row
    sums = claims._tag_step_sums(rows)

    def reference(family: set) -> float:
        out = []
        for part in (rows[rows.tag.isin(family)], rows[~rows.tag.isin(family)]):
            w = (part.value * part.tag_tokens).groupby(part.step_a).sum()
            pooled = w / part.tag_tokens.groupby(part.step_a).sum()
            step = claims.crossing_step(pooled.index, pooled.values, 0.5, cs.sustained)
            out.append(np.inf if not np.isfinite(step) else step)
        return out[0] - out[1]

    cs = configured.claims(convergence_threshold=0.5)
    for family in ({"a", "b"}, {"c"}, {"a", "d", "e", "g"}, set("abcdef")):
        got = claims._family_steps(sums, np.isin(sums[0], list(family)), cs)
        want = reference(family)
        assert got == want or (np.isnan(got) and np.isnan(want)), family
