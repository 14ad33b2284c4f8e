"""Per-model units and seeds in the stage graph, on the smoke experiment: changing one model's
preset recomputes that model only; a two-seed sweep followed by the aggregate stage pools both
seeds with every analysis table and compares them (S2)."""

import re

import pandas as pd
import pytest
from conftest import plan, run_pipeline

pytestmark = pytest.mark.slow


def _with(args, stages, *extra):
    return [a for a in args if not a.startswith("stages=")] + [f"stages=[{stages}]", *extra]


def _status(text: str) -> dict[str, str]:
    """The runner's closing lines: '<stage> [<model>]  ran|cached'."""
    return dict(re.findall(r"\] - ((?:train|extract) \S+)\s+(ran|cached)\s*$", text, flags=re.M))


def test_one_changed_model_is_the_only_one_recomputed(smoke_trained):
    art, args, *_ = smoke_trained
    first = run_pipeline(*_with(args, "prepare,train,extract"))
    assert first.returncode == 0, first.stderr[-3000:]
    changed = run_pipeline(*_with(args, "prepare,train,extract",
                                  "model.tagger_pos.max_update=25"))
    assert changed.returncode == 0, changed.stderr[-3000:]
    status = _status(changed.stdout + changed.stderr)
    assert status["train tagger_pos"] == "ran" and status["extract tagger_pos"] == "ran"
    others = {k: v for k, v in status.items() if not k.endswith(" tagger_pos")}
    assert len(others) == 14 and set(others.values()) == {"cached"}, others


def test_two_seeds_pooled_by_the_aggregate_stage(smoke_trained):
    art, args, *_ = smoke_trained
    models = "model=[lstm_lm_paper,tagger_pos]"
    sweep = run_pipeline("-m", *_with(args, "prepare,train,extract,analyze", models,
                                      "seed=1,2"))
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    agg_args = _with(args, "aggregate", models, "aggregate.seeds=[1,2]",
                     "plot.formats=[png]")
    pooled = run_pipeline(*agg_args)
    assert pooled.returncode == 0, pooled.stderr[-3000:]
    nodes = plan(*[a for a in agg_args if not a.startswith("stages=")])
    out = nodes["aggregate"].dir
    analysed = {p.stem for s in (1, 2)
                for p in (nodes["aggregate"].seeds[s]["analyze"].dir / "tables").glob("*.parquet")}
    written = {p.stem for p in (out / "tables").glob("*.parquet")}
    assert analysed <= written, sorted(analysed - written)
    conv = pd.read_parquet(out / "tables" / "convergence.parquet")
    assert (conv.n_seeds == 2).all()
    s2 = pd.read_parquet(out / "tables" / "seeds.parquet")
    assert set(zip(s2.seed_a, s2.seed_b, strict=True)) == {(1, 2)}
    assert set(s2.model) == {"lstm_lm_paper", "tagger_pos"}
    assert (out / "figures" / "s2_seed_to_seed.png").is_file()
    over = pd.read_parquet(out / "tables" / "claims_over_seeds.parquet")
    assert (over.n_seeds == 2).all()
