"""analysis.dynamics on synthetic stores whose dynamics are known by construction."""

from dataclasses import replace

import configured
import numpy as np
import pandas as pd
import pytest
import torch
from synthstudy import (
    DIM,
    STEPS,
    _checkpoints,
    _write,
    build_study,
    small_settings,
    study_tables,
    synth_tokens,
)

from analysis import repstore
from analysis.comparisons import full_basis
from analysis.runs import ModelRun, Probe, tagged_word_and_freq, usable_steps
from analysis.settings import AnalysisSettings
from analysis.tables.concentration import concentration_tables
from analysis.tables.convergence import fraction_steps, over_training
from analysis.tables.per_tag import common_n, family_pooled, per_tag, tag_samples
from analysis.tables.rows import SIM_COLUMNS
from analysis.tables.sanity import seed_to_seed, sensitivity, sensitivity_verdicts

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


def test_per_tag_common_n_and_eligible_tags():
    s = small_settings()
    tokens = synth_tokens()
    counts = tokens.pos_target[~tokens.pos_target.isin(s.exclude_tags)].value_counts()
    n = common_n(counts, s)
    assert s.per_tag.min_n <= n <= s.per_tag.max_n
    pt = study_tables()["per_tag"]
    pt = pt[pt.model == "lm"]
    raw = pt[(pt.tag_family == "pos") & ~pt.freq_matched.astype(bool)]
    assert set(raw.n_tokens) == {n}
    assert set(raw.tag) == set(counts.index[counts >= n])
    assert "</s>" not in set(pt.tag)
    # word types counted on the sample; the step-0 reference is the first step's value
    assert (raw.n_types <= n).all() and (raw.n_types >= 1).all()
    first = raw[raw.step_a == 0]
    np.testing.assert_allclose(first.value, first.ref_init)
    topics = pt[pt.tag_family == "topic"]
    assert set(topics.tag) == {"news", "fiction"}


def test_common_n_rule():
    s = small_settings()
    s = replace(s, per_tag=replace(s.per_tag, min_n=10, max_n=100, min_tags=3))
    assert common_n(pd.Series([500, 400, 50, 5]), s) == 50
    assert common_n(pd.Series([500, 400, 300]), s) == 100
    assert common_n(pd.Series([500, 4]), s) == 10


def test_frequency_matched_samples_have_equal_bin_counts():
    s = small_settings()
    s = replace(s, per_tag=replace(s.per_tag, freq_bins=2))
    tokens = synth_tokens()
    samples = tag_samples(tokens, "pos", 40, s, "synth", "lm", freq_matched=True)
    assert samples, "some tag must be matchable"
    # documented rule: 2 bins cut at the median log-frequency of the eligible tags' tokens
    counts = tokens.pos.value_counts()
    eligible = tokens.pos.isin(counts.index[counts >= 40]).to_numpy()
    logf = np.log1p(tokens.train_freq.to_numpy(dtype=float))
    cut = np.quantile(logf[eligible], 0.5)
    for tag, idx in samples.items():
        assert len(idx) == 40
        assert (tokens.pos.iloc[idx] == tag).all()
        assert int((logf[idx] >= cut).sum()) == 20, tag
    unmatched = set(counts.index[counts >= 40]) - set(samples)
    for tag in unmatched:  # left out only when a bin holds fewer than 20 of its tokens
        rows = (tokens.pos == tag).to_numpy()
        assert min((logf[rows] >= cut).sum(), (logf[rows] < cut).sum()) < 20


def test_samples_are_seeded_and_shared_across_models(tmp_path):
    runs = build_study(tmp_path)
    s = small_settings(max_tokens=100)
    lm, tagger = runs[0], next(r for r in runs if r.reference)
    a = Probe.open(lm, "synth").sample("lm", s)
    b = Probe.open(tagger, "synth").sample("lm", s)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 100 and np.all(np.diff(a) > 0)
    other = Probe.open(runs[0], "synth").sample("lm", small_settings(max_tokens=100,
                                                                             seed=4))
    assert not np.array_equal(a, other)


def test_analysis_is_deterministic(tmp_path):
    runs = build_study(tmp_path, seed=1)
    s = small_settings()
    p = Probe.open(runs[0], "synth")
    one = per_tag(p, s)
    two = per_tag(Probe.open(runs[0], "synth"), s)
    pd.testing.assert_frame_equal(one, two)
    c1, f1 = concentration_tables(p, s)
    c2, f2 = concentration_tables(p, s)
    assert len(c1) > 0 and len(f1) > 0
    pd.testing.assert_frame_equal(c1, c2)
    pd.testing.assert_frame_equal(f1, f2)


def test_target_aligned_word_and_frequency_shift_within_sentences():
    tokens = synth_tokens(n_sent=3, length=4)
    word, freq = tagged_word_and_freq(tokens, "pos_target")
    assert word.iloc[0] == tokens.word.iloc[1].lower()
    assert freq.iloc[0] == tokens.train_freq.iloc[1]
    last = tokens.position == tokens.position.max()
    assert word[last].isna().all() and freq[last].isna().all()
    same, _ = tagged_word_and_freq(tokens, "pos")
    assert (same == tokens.word.str.lower()).all()


def test_usable_steps_skip_unfinished_checkpoints(tmp_path):
    runs = build_study(tmp_path)
    root = runs[0].stores["synth"]
    (repstore.step_dir(root, 8) / "done").unlink()
    assert 8 not in usable_steps(root)
    assert usable_steps(root) == [s for s in STEPS if s != 8]


def test_intrinsic_dimension_of_low_rank_layer():
    k = study_tables()["intrinsic_dim"]
    assert (k["rank"] <= DIM).all() and (k.k <= k["rank"]).all()
    assert (k.k_s >= k.k_s2).all()  # the sum-of-s rule keeps at least as many directions
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 3)) @ rng.standard_normal((3, 10))
    b = full_basis(x)
    assert b.basis.rank == 3


def test_token_count_sanity_falls_with_tokens():
    s1 = study_tables()["sanity_tokens"]
    g = s1[(s1.source == "gaussian") & (s1.metric == "svcca")].sort_values("n_tokens")
    assert g.value.iloc[0] > g.value.iloc[-1]  # CCA bias shrinks as N grows (true value 0)
    real = s1[s1.source == "init_vs_final"]
    assert set(real.layer) == {"embed", "lstm_1", "lstm_2"}


def test_concentration_tables():
    conc, fc = study_tables()["concentration"], study_tables()["function_content"]
    nmt_tags = conc[conc.model == "nmt"].groupby(["side", "quantity"]).tag_column.first()
    assert nmt_tags.to_dict() == {("source", "act"): "pos", ("source", "grad"): "pos",
                                  ("target", "act"): "pos", ("target", "grad"): "pos_target"}
    conc, fc = conc[conc.model == "lm"], fc[fc.model == "lm"]
    whole = conc[conc.tag == "all"]
    assert (whole.n_tokens == len(synth_tokens())).all()
    assert set(conc.quantity) == {"act", "grad"}
    grads = conc[(conc.quantity == "grad") & (conc.tag != "all")]
    assert grads.tag_column.eq("pos_target").all() and "</s>" not in set(grads.tag)
    g = fc[fc.quantity == "grad"]
    assert (g.difference > 0.2).all() and (g.ci_low > 0).all()
    a = fc[fc.quantity == "act"]
    assert (a.ci_low < 0.1).all()  # activations were not built with a function/content gap


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


def test_settings_from_config_are_typed_and_a_missing_key_is_an_error():
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue

    from pipeline.config import typed

    conf = OmegaConf.structured(configured.analysis())
    cfg = OmegaConf.merge(conf, {"fixed_k": [10], "fractions": [0, 1],
                                 "claims": {"c3": {"margin": 0.1}}, "per_tag": {"max_n": 7},
                                 "concentration": {"ci": 0.9, "n_boot": 11},
                                 "sanity": {"model": "m", "token_counts": [5]}, "seed": 4})
    s = typed(cfg, AnalysisSettings)
    assert s.fixed_k == [10] and s.fractions == [0.0, 1.0]
    assert all(isinstance(f, float) for f in s.fractions)
    assert (s.per_tag.max_n, s.concentration.ci, s.concentration.n_boot) == (7, 0.9, 11)
    assert (s.sanity.model, s.sanity.token_counts, s.seed) == ("m", [5], 4)
    assert s.claims.c3.margin == 0.1 and s.per_tag.min_n == configured.analysis().per_tag.min_n
    # the schema holds no value of its own: a key the config leaves out is an error
    partial = OmegaConf.to_container(conf)
    del partial["per_tag"]["min_n"]
    with pytest.raises(MissingMandatoryValue, match="min_n"):
        typed(partial, AnalysisSettings)


def test_a_representation_with_nan_gives_na_rows_with_the_reason(tmp_path):
    """NaN in one checkpoint's layer: that layer's rows at that step are NA with a reason
    naming model, probe, step and layer; every other row is computed; claims skip NA rows."""
    from analysis import claims, report

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
    counted = report.not_computed({"convergence": conv})
    assert set(counted.metric) == set(conv.metric) and (counted.rows == 1).all()
    assert len(claims.evaluate({"convergence": conv}, small_settings().claims)) > 0
    assert repstore.nonfinite(lm.stores["synth"]) == [
        f"{path}: 1 of {bad.size} values are NaN or inf"]
    tags = per_tag(Probe.open(lm, "synth"), small_settings())
    family = family_pooled(tags)  # pooled over tags: NA where one tag is
    na = family[family.value.isna()]
    assert len(na) and set(zip(na.step_a, na.layer_a, strict=True)) == {(4, "lstm_1")}
    assert na.na_reason.str.contains("tags not computed: .*lm/synth step 4 lstm_1").all()
    assert family[family.value.notna()].na_reason.isna().all()


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_analysis_on_cuda_equals_cpu(tmp_path):
    """analysis.device=cuda: the same tables as on the CPU, to float tolerance."""
    runs = build_study(tmp_path, seed=1)
    p = Probe.open(runs[0], "synth")
    for fn in (over_training, per_tag, sensitivity):
        cpu, gpu = (fn(p, small_settings(device=d)) for d in ("cpu", "cuda"))
        for name in cpu if isinstance(cpu, dict) else [None]:
            a, b = (cpu[name], gpu[name]) if name else (cpu, gpu)
            assert list(a.columns) == list(b.columns) and len(a) == len(b), (fn, name)
            for col in ("value", "baseline"):
                if col in a:
                    np.testing.assert_allclose(b[col], a[col], rtol=1e-6, atol=1e-9,
                                               err_msg=f"{fn.__name__} {name} {col}")
