"""analysis.pooling and the aggregate stage: several seeds' tables pooled with t-intervals,
every analysis table covered, S2 from the seeds' representations."""

import configured
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from synthstudy import REPO_CONF, build_study, plotted, write_units

from analysis import pooling
from analysis.tables import registry as T


def test_pool_means_and_t_intervals_over_seeds():
    rows = []
    for seed, shift in ((1, 0.0), (2, 0.1), (3, 0.2)):
        for step in (0, 10):
            rows.append(dict(analysis="convergence", model="lm", seed=seed, probe="p",
                             side="lm", layer_a="embed", step_a=step, metric="cka",
                             value=0.5 + shift + step / 100, k_a=8, k_b=8, n_tokens=100))
    pooled = pooling.pool(pd.DataFrame(rows), value_columns=["value"])
    assert len(pooled) == 2 and (pooled.n_seeds == 3).all()
    first = pooled.sort_values("step_a").iloc[0]
    assert np.isclose(first.value, 0.6)
    half = 4.302652729911275 * 0.1 / np.sqrt(3)  # t(0.975, df=2) * sd / sqrt(n)
    assert np.isclose(first.ci_high - first.value, half)
    assert np.isclose(first.value - first.ci_low, half)
    mean, low, high = pooling.t_interval(np.array([1.0, np.nan, 3.0]))
    assert mean == 2.0 and np.isclose(high - mean, 12.706204736174703)  # t(0.975, 1) * sd/√n


def test_every_analysis_table_has_a_pooling_rule():
    _, _, tables = plotted()  # the analyze stage's tables of the synthetic study
    pooled = pooling.aggregate([tables, tables], configured.claims())
    assert "nmt_stage_resamples" in tables and "nmt_stage_resamples" not in pooled
    per_seed = set(T.pooled_names(T.PER_SEED))
    assert set(tables) - per_seed <= set(pooled), sorted(set(tables) - set(pooled))
    assert (pooled["convergence"].n_seeds == 1).all()  # the same seed twice


def test_a_table_without_a_rule_is_an_error():
    _, _, tables = plotted()
    with pytest.raises(ValueError, match="'new_table'.*no pooling rule"):
        pooling.aggregate([{**tables, "new_table": pd.DataFrame({"x": [1.0]})}],
                          configured.claims())


def test_aggregate_stage_pools_seeds_and_compares_them(tmp_path):
    """run_aggregate on two seeds' units: every table pooled, S2 from the representations
    (seed 2's stores are copies of seed 1's, so every final layer matches exactly)."""
    from pipeline.stages.aggregate import run_aggregate
    from pipeline.stages.analyze import run_analyze

    analysis = OmegaConf.load(REPO_CONF / "analysis" / "default.yaml")
    analysis.max_tokens = 5000  # interpolated from extract in the full config
    analysis.per_tag.update(min_n=30, max_n=60)
    analysis.sanity.update(dims=8, token_counts=[40, 100])
    analysis.concentration.n_boot = 20
    analysis.claims.n_permutations, analysis.rsa_max_rows = 10, 300  # small and quick
    plot = OmegaConf.load(REPO_CONF / "plot" / "default.yaml")
    plot.update(dpi=40, formats=["png"], workers=1)
    runs = build_study(tmp_path / "stores")
    seeds = {}
    for seed in (1, 2):
        extract, train = write_units(runs, tmp_path / f"seed{seed}", seed)
        cfg = OmegaConf.create({"analysis": analysis, "seed": seed,
                                "train": {"parallel": 1, "device": "cpu"}})
        run_analyze(cfg, tmp_path / f"analyze{seed}", {"extract": extract, "train": train})
        seeds[seed] = {"extract": extract, "train": train, "analyze": tmp_path / f"analyze{seed}"}
    cfg = OmegaConf.create({"name": "synthetic", "analysis": analysis, "plot": plot,
                            "aggregate": {"seeds": [1, 2], "ci": 0.95}, "train": {"device": "cpu"}})
    summary = run_aggregate(cfg, tmp_path / "out", {"seeds": seeds})
    assert summary["seeds"] == [1, 2]
    written = {p.stem for p in (tmp_path / "out" / "tables").glob("*.parquet")}
    analysed = {p.stem for p in (tmp_path / "analyze1" / "tables").glob("*.parquet")}
    assert analysed <= written and "seeds" in written and "claims_over_seeds" in written
    s2 = pd.read_parquet(tmp_path / "out" / "tables" / "seeds.parquet")
    assert set(zip(s2.seed_a, s2.seed_b, strict=True)) == {(1, 2)}
    np.testing.assert_allclose(s2[s2.checkpoint == "final"].value, 1.0, atol=1e-6)
    conv = pd.read_parquet(tmp_path / "out" / "tables" / "convergence.parquet")
    assert (conv.n_seeds == 2).all() and {"ci_low", "ci_high"} <= set(conv.columns)
    assert (tmp_path / "out" / "figures" / "s2_seed_to_seed.png").is_file()
    assert "mean over seeds [1, 2]" in (tmp_path / "out" / "report.md").read_text()
