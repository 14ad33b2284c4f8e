"""analysis.tables.convergence (and the rows every similarity table shares) on synthetic stores
whose dynamics are known by construction."""

import numpy as np
import pandas as pd
import pytest
from synthstudy import (
    DIM,
    STEPS,
    build_study,
    small_settings,
    study_tables,
)

from analysis import repstore
from analysis.comparisons import full_basis
from analysis.runs import Probe
from analysis.tables.convergence import fraction_steps, over_training
from analysis.tables.per_tag import family_pooled, per_tag
from analysis.tables.rows import SIM_COLUMNS

SIMILARITY_TABLES = ["convergence", "tagger", "layer_matrix", "per_tag", "family"]


def test_similarity_tables_are_tidy():
    for name in SIMILARITY_TABLES:
        t = study_tables()[name]
        assert list(t.columns[: len(SIM_COLUMNS)]) == SIM_COLUMNS, name
        assert len(t) > 0, name
        assert (t.analysis == name).all()
        signed = t.metric.isin(["cka_debiased", "rsa"])  # unbiased / rank correlations
        assert t.value[~signed].between(-1e-9, 1 + 1e-9).all(), name
        assert t.value[signed].between(-1 - 1e-9, 1 + 1e-9).all(), name
        assert (t.k_a <= DIM).all() and (t.k_b <= DIM).all(), name
    conv = study_tables()["convergence"]
    assert set(conv.metric) == {"svcca", "svcca_k20", "svcca_k50", "pwcca", "cka", "cka_debiased",
                                "procrustes", "rsa"}
    assert set(conv.variance_rule) == {"s2:0.99", "k=20", "k=50", "rank", "full", "rows<=1000"}
    assert (conv.rtol_a.dropna() > 0).all() and set(conv.metric_kind) == {"similarity"}
    # fixed k is capped at the layer width, and recorded
    assert (conv[conv.metric == "svcca_k50"].k_a == DIM).all()


def test_final_checkpoint_matches_itself_and_lower_layers_converge_first():
    conv = study_tables()["convergence"]
    final = conv[conv.step_a == max(STEPS)]
    np.testing.assert_allclose(final.value, 1.0, atol=1e-9)
    svcca = conv[conv.metric == "svcca"].set_index(["layer_a", "step_a"]).value
    # built so that embed arrives at step 1, lstm_1 at 4, lstm_2 at 16
    assert svcca[("embed", 2)] == pytest.approx(1.0)
    assert svcca[("lstm_1", 2)] < 0.95
    assert svcca[("lstm_2", 2)] < svcca[("lstm_1", 2)]


def test_baselines_only_at_fraction_checkpoints_and_below_real_values():
    conv = study_tables()["convergence"]
    picked = set(fraction_steps(STEPS, small_settings().fractions).values())
    have = set(conv[conv.baseline.notna()].step_a)
    assert have == picked
    converged = conv[(conv.step_a == max(STEPS)) & conv.baseline.notna()]
    assert (converged.baseline < converged.value - 0.2).all()


def test_layer_matrix_panes_and_diagonal():
    m = study_tables()["layer_matrix"]
    assert set(m.fraction_target) == {0.0, 0.35, 0.75, 1.0}
    last = m[(m.fraction_target == 1.0) & (m.layer_a == m.layer_b)]
    np.testing.assert_allclose(last.value, 1.0, atol=1e-9)
    sizes = m.groupby(["model", "side", "fraction_target", "metric"]).size()
    assert (sizes.loc["lm"] == 9).all()  # 3 x 3 layers per pane and metric
    # encoder and decoder layers are compared within their own side only (2 x 2)
    assert (sizes.loc["nmt"] == 4).all()
    nmt = m[m.model == "nmt"]
    assert (nmt.layer_a.str[:3] == nmt.layer_b.str[:3]).all()


def test_tagger_rows_pair_every_layer_with_the_taggers_layer():
    t = study_tables()["tagger"]
    assert set(t.layer_a) == {"embed", "lstm_1", "lstm_2"}
    # the taggers have no lstm_2: it is compared with their top layer
    pairs = set(zip(t.layer_a, t.layer_b, strict=True))
    assert pairs == {("embed", "embed"), ("lstm_1", "lstm_1"), ("lstm_2", "lstm_1")}
    assert set(t.tag_family) == {"pos", "semtag", "topic"}
    assert set(t.model_b) == {"tagger_pos", "tagger_semtag", "tagger_topic"}


def test_intrinsic_dimension_of_low_rank_layer():
    k = study_tables()["intrinsic_dim"]
    assert (k["rank"] <= DIM).all() and (k.k <= k["rank"]).all()
    assert (k.k_s >= k.k_s2).all()  # the sum-of-s rule keeps at least as many directions
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 3)) @ rng.standard_normal((3, 10))
    b = full_basis(x)
    assert b.basis.rank == 3


def test_a_representation_with_nan_gives_na_rows_with_the_reason(tmp_path):
    """NaN in one checkpoint's layer: that layer's rows at that step are NA with a reason
    naming model, probe, step and layer; every other row is computed; claims skip NA rows."""
    from analysis import claims
    from analysis.tables.rows import not_computed

    runs = build_study(tmp_path)
    lm = runs[0]
    path = repstore.step_dir(lm.stores["synth"], 4) / "act" / "lstm_1.npy"
    bad = np.load(path)
    bad[3, 2] = np.nan
    np.save(path, bad)
    conv = over_training(Probe.open(lm, "synth"), small_settings())[
        "convergence"]
    na = conv[conv.na_reason.notna()]
    assert set(zip(na.step_a, na.layer_a, strict=True)) == {(4, "lstm_1")}
    assert na.value.isna().all() and len(na) == conv.metric.nunique()
    assert na.na_reason.str.contains("lm/synth step 4 lstm_1").all()
    assert conv[conv.na_reason.isna()].value.notna().all()
    counted = not_computed({"convergence": conv})
    assert set(counted.metric) == set(conv.metric) and (counted.rows == 1).all()
    cs = small_settings().claims
    evaluated = claims.evaluate({"convergence": conv}, cs)
    c1 = evaluated[evaluated.claim == "C1"]  # a unit per metric, evaluated on the other rows
    assert set(c1.metric) == set(conv.metric) and c1.verdict.isin(["PASS", "FAIL"]).all()
    finite = claims.evaluate({"convergence": conv[conv.na_reason.isna()]}, cs)
    pd.testing.assert_frame_equal(evaluated, finite)  # the NA rows are left out
    assert repstore.nonfinite(lm.stores["synth"]) == [
        f"{path}: 1 of {bad.size} values are NaN or inf"]
    tags = per_tag(Probe.open(lm, "synth"), small_settings())
    family = family_pooled(tags)  # pooled over tags: NA where one tag is
    na = family[family.value.isna()]
    assert len(na) and set(zip(na.step_a, na.layer_a, strict=True)) == {(4, "lstm_1")}
    assert na.na_reason.str.contains("tags not computed: .*lm/synth step 4 lstm_1").all()
    assert family[family.value.notna()].na_reason.isna().all()
