"""analysis.tables.per_tag: the common N, the tag and frequency-matched samples, the family
pooling."""
from dataclasses import replace

import numpy as np
import pandas as pd
from synthstudy import (
    build_study,
    small_settings,
    study_tables,
    synth_tokens,
)

from analysis.runs import Probe
from analysis.tables.per_tag import common_n, tag_samples


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
