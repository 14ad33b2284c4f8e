"""Sweeps with Hydra's launchers, on the smoke experiment: a two-seed sweep run in parallel by
the joblib launcher shares one prepare and leaves two seeds that the aggregate stage pools
with every analysis table (and S2); a failed job is reported by name and log at the end."""

import shutil

import pandas as pd
import pytest
from conftest import plan, run_pipeline

pytestmark = pytest.mark.slow
MODELS = "model=[lstm_lm_paper,tagger_pos]"


def test_a_parallel_sweep_shares_prepare_and_the_aggregate_pools_it(smoke_prepared, mirror,
                                                                      tmp_path):
    """In its own artifacts dir (beside the smoke training's tests, in another process),
    starting from the shared prepared data."""
    art = tmp_path
    shutil.copytree(smoke_prepared[0] / "smoke" / "prepare", art / "smoke" / "prepare")
    common = ["experiment=smoke", f"mirror={mirror}", f"artifacts_dir={art}", MODELS]
    sweep = run_pipeline("-m", *common, "stages=[prepare,train,extract,compress,analyze]",
                         "seed=1,2",
                         "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "train.parallel=1")
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert len(list((art / "smoke" / "prepare").glob("*/.done.json"))) == 1  # shared
    agg = run_pipeline(*common, "stages=[aggregate]", "aggregate.seeds=[1,2]",
                       "plot.formats=[png]")
    assert agg.returncode == 0, agg.stderr[-3000:]
    nodes = plan(*common, "aggregate.seeds=[1,2]", "plot.formats=[png]")
    out = nodes["aggregate"].dir
    analysed = {p.stem for s in (1, 2)
                for p in (nodes["aggregate"].seeds[s]["analyze"].dir / "tables").glob("*.parquet")}
    written = {p.stem for p in (out / "tables").glob("*.parquet")}
    assert analysed <= written, sorted(analysed - written)
    assert (pd.read_parquet(out / "tables" / "convergence.parquet").n_seeds == 2).all()
    s2 = pd.read_parquet(out / "tables" / "seeds.parquet")
    assert set(zip(s2.seed_a, s2.seed_b, strict=True)) == {(1, 2)}
    assert set(s2.model) == {"lstm_lm_paper", "tagger_pos"}
    assert (out / "figures" / "s2_seed_to_seed.png").is_file()
    answer = pd.read_parquet(out / "tables" / "answer.parquet")
    assert (answer.n_seeds == 2).any()  # the claims tested across the two seeds


def test_failed_jobs_are_named_with_their_logs_at_the_end(smoke_prepared, mirror, tmp_path):
    shutil.copytree(smoke_prepared[0] / "smoke" / "prepare", tmp_path / "smoke" / "prepare")
    common = ["experiment=smoke", f"mirror={mirror}", f"artifacts_dir={tmp_path}", MODELS]
    result = run_pipeline("-m", *common, "stages=[prepare],[analyze]")  # nothing trained here
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert "1 job(s) of the sweep failed" in text
    assert "job 1 (" in text and "stages=[analyze])" in text
    assert "stage analyze needs train" in text
    log = text.split("log: ", 1)[1].split()[0]
    assert log.endswith("__main__.log") and "stage analyze needs train" in open(log).read()
