"""analysis.claims.units: each claim's units pass on data built to satisfy it and fail on its
opposite; curves are read as progress."""

import configured
import numpy as np
import pandas as pd
import pytest
from synthstudy import reversed_claims, study_claims, study_tables

from analysis import claims
from analysis.claims import units

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
    rows, the combined one included, carry their own claim names."""
    rows = [dict(model="lm", seed=1, probe="p", model_b=b, metric="cka", depth_a=d,
                 layer_a=layer, step_a=s, value=v, shared_init=b.endswith("shared"),
                 p_increase=0.01, p_decrease=0.9)
            for b in ("tagger", "tagger_shared")
            for d, layer, values in ((0, "embed", (0.5, 0.6)), (1, "lstm_1", (0.2, 0.7)))
            for s, v in zip((0, 100), values, strict=True)]
    c = pd.DataFrame(claims.claim_c3(pd.DataFrame(rows), CS)).set_index("claim")
    assert set(c.index) == {"C3", "C3 rec", "C3 emb", "C3 (shared init)",
                            "C3 rec (shared init)", "C3 emb (shared init)"}
    assert c.loc["C3", "verdict"] == "FAIL" and c.loc["C3", "scope"] == "tagger=tagger"
    assert c.loc["C3 (shared init)", "scope"] == "tagger=tagger_shared (shared init)"
    assert c.loc["C3 rec", "verdict"] == "PASS" and c.loc["C3 rec", "p_value"] == 0.01
    assert c.loc["C3 emb", "verdict"] == "FAIL" and c.loc["C3 emb", "p_value"] == 0.9
    assert c.loc["C3 rec (shared init)", "value"] == pytest.approx(0.5)
    assert c.loc["C3 emb (shared init)", "value"] == pytest.approx(-0.1)
    assert claims.statement("C3 emb (shared init)").startswith("the embedding")


def test_c4_passes_and_fails_by_construction():
    good = study_claims()
    bad = reversed_claims()
    g, b = good[good.claim == "C4"], bad[bad.claim == "C4"]
    assert len(g) == 3 and (g.verdict == "PASS").all() and (g.ci_low > 0).all()
    assert len(b) == 3 and (b.verdict == "FAIL").all() and (b.ci_high < 0).all()
    fc = study_tables()["function_content"]
    grad = fc[(fc.quantity == "grad") & (fc.side == "lm")]
    grad = grad[grad.step == grad.step.max()].set_index("layer")
    for r in g.itertuples():  # relative to the content words' mean concentration
        layer = r.scope.removeprefix("layer=")
        assert r.value == pytest.approx(grad.loc[layer, "difference"]
                                        / grad.loc[layer, "content_mean"])
    kind = good[good.claim.str.startswith("C4 ")]  # the same rows, per architecture
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
def test_c2_compares_pos_and_topic_convergence(pos, topic, expected):
    rows = claims.claim_c2(family_table(pos, topic), CS, metrics=["cka", "svcca"])
    by_metric = {r["metric"]: r for r in rows}
    assert by_metric["cka"]["verdict"] == expected
    if expected != "NA":  # the step difference as a share of the 8 steps of training
        assert by_metric["cka"]["value"] == pytest.approx((topic - pos) / 8)
    assert by_metric["svcca"]["verdict"] == "NA"  # not computed on tag subsets: said so


def test_c2_reads_progress_not_raw_similarity():
    """POS-restricted similarity starts at 0.95 and so sits above 0.9 throughout, topic
    starts at 0.1; both make their change at step 4: by progress, neither comes first."""
    steps = [0, 1, 2, 4, 8]
    rows = [dict(model="lm", kind="lm", seed=1, probe="p", layer_a="lstm_1", metric="cka",
                 tag="pooled", tag_family=fam, step_a=s,
                 value=start if s < 4 else 1.0)
            for fam, start in (("pos", 0.95), ("topic", 0.1)) for s in steps]
    (row,) = claims.claim_c2(pd.DataFrame(rows), CS)
    assert row["value"] == 0 and row["verdict"] == "FAIL"
    assert row["detail"] == "pos converged from 4, topic from 4"


def test_c2_size_compares_pos_with_random_subsets_of_its_size():
    """The size control: a random family of the same N tokens arriving after POS passes; on
    probes without topic labels (whose subsets C2 compares) nothing is claimed."""
    table = family_table(1, 2)
    random = table[table.tag_family == "pos"].assign(
        tag_family="random", value=lambda d: np.where(d.step_a >= 4, 1.0, 0.5))
    rows = claims.claim_c2(pd.concat([table, random]), CS, other="random")
    (row,) = rows
    assert row["claim"] == "C2 size" and row["verdict"] == "PASS"
    assert row["value"] == pytest.approx((4 - 1) / 8)
    assert row["statistic"] == "(step_random - step_pos) / steps"
    assert claims.claim_c2(pd.concat([table[table.tag_family == "pos"], random]), CS,
                           other="random") == []
    study = study_claims()
    assert (study.claim == "C2 size").any()


def test_summary_counts_units_by_verdict():
    rows = pd.DataFrame(dict(claim=["C1", "C1", "C2", "C3"], metric=["a", "a", "a", "a"],
                             verdict=["PASS", "FAIL", "NA", "PASS"]))
    s = claims.summarize(rows).set_index("claim")
    assert (s.loc["C1", "n_pass"], s.loc["C1", "n_fail"]) == (1, 1)
    assert s.loc["C2", "n_na"] == 1 and s.loc["C3", "n_pass"] == 1


def test_claim_settings_are_read_from_the_analysis_config():
    from omegaconf import OmegaConf

    from analysis.settings import AnalysisSettings
    from pipeline.config import typed

    cfg = OmegaConf.merge(OmegaConf.structured(configured.analysis()),
                          {"claims": {"convergence_threshold": 0.8,
                                      "primary": {"C1": {"min_effect": 0.3}},
                                      "c4": {"sides": ["lm", "target"]}}})
    cs = typed(cfg, AnalysisSettings).claims
    assert cs.convergence_threshold == 0.8 and cs.primary["C1"].min_effect == 0.3
    assert cs.primary["C1"].metric == configured.claims().primary["C1"].metric
    assert cs.c4.sides == ["lm", "target"] and cs.alpha == configured.claims().alpha


def test_c1_p_value_is_exact_over_layer_orderings():
    assert units.spearman_p([0, 1, 2], [1.0, 2.0, 3.0], 1.0) == pytest.approx(1 / 6)
    assert units.spearman_p([0, 1], [1.0, 5.0], 1.0) == 0.5  # 2 layers cannot be significant
    assert np.isnan(units.spearman_p([0, 1], [1.0, 1.0], np.nan))


def test_unit_p_values_are_small_where_the_study_builds_the_effect():
    good = study_claims()
    bad = reversed_claims()
    g, b = good[good.claim == "C4"], bad[bad.claim == "C4"]
    assert g.p_value.notna().all() and b.p_value.notna().all()
    assert (g.p_value < 0.05).all() and (b.p_value > 0.5).all()
    c2 = good[(good.claim == "C2") & good.verdict.isin(["PASS", "FAIL"])]
    assert c2.p_value.between(0, 1).all() and len(c2)


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
    assert early["verdict"] == "PASS" and early["value"] == pytest.approx((8 - 2) / 16)
    assert early["detail"] == "vs POS tagger converged from 2, vs topic from 8"
    (late,) = claims.claim_c2b(tagger_curves(8, 2), CS)
    assert late["verdict"] == "FAIL" and late["value"] < 0
    only_pos = tagger_curves(2, 8)
    (na,) = claims.claim_c2b(only_pos[only_pos.tag_family == "pos"], CS)
    assert na["verdict"] == "NA"
    study = study_claims()
    assert (study.claim == "C2b").any()
