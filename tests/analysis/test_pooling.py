"""analysis.pooling and the aggregate stage: several seeds' tables pooled with t-intervals,
every analysis table covered, S2 from the seeds' representations."""

import configured
import numpy as np
import pandas as pd
import pytest
from synthstudy import plotted, stage_runs

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
    assert "nmt_stages" in tables and "nmt_stages" in pooled
    per_seed = {name for name, t in T.TABLES.items() if t.pooling == T.PER_SEED}
    assert set(tables) - per_seed <= set(pooled), sorted(set(tables) - set(pooled))
    assert (pooled["convergence"].n_seeds == 1).all()  # the same seed twice


def test_a_table_without_a_rule_is_an_error():
    _, _, tables = plotted()
    with pytest.raises(ValueError, match="'new_table'.*no pooling rule"):
        pooling.aggregate([{**tables, "new_table": pd.DataFrame({"x": [1.0]})}],
                          configured.claims())


def test_aggregate_stage_pools_seeds_and_compares_them():
    """run_aggregate on two seeds' units: every table pooled, S2 from the representations
    (seed 2's stores are copies of seed 1's, so every final layer matches exactly)."""
    summary, out = stage_runs()["aggregate"]
    assert summary["seeds"] == [1, 2]
    written = {p.stem for p in (out / "tables").glob("*.parquet")}
    analysed = {p.stem for p in (stage_runs()["analyze"][1][1] / "tables").glob("*.parquet")}
    assert analysed <= written
    assert "seeds" in written and "claims_over_seeds" in written
    s2 = pd.read_parquet(out / "tables" / "seeds.parquet")
    assert set(zip(s2.seed_a, s2.seed_b, strict=True)) == {(1, 2)}
    np.testing.assert_allclose(s2[s2.checkpoint == "final"].value, 1.0, atol=1e-6)
    conv = pd.read_parquet(out / "tables" / "convergence.parquet")
    assert (conv.n_seeds == 2).all() and {"ci_low", "ci_high"} <= set(conv.columns)
    assert (out / "figures" / "s2_seed_to_seed.png").is_file()
    assert "mean over seeds [1, 2]" in (out / "report.md").read_text()
    layers = pd.read_parquet(out / "tables" / "learned_layers.parquet").query("model == 'lm'")
    # seed 2 copies seed 1: its initial models agree exactly as its final ones do, so no
    # layer gains beyond chance: learned fails
    assert len(layers) and not layers.learned.astype(bool).any()
    answer = pd.read_parquet(out / "tables" / "answer.parquet")
    assert (answer.n_seeds[answer.role == "primary"] <= 2).all()
