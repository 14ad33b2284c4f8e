"""`experiment=smoke` through every stage: tables, every figure, and the report; then `plot`
alone redraws from the tables without loading a model."""

import json

import pandas as pd
import pytest
from conftest import plan, run_pipeline

pytestmark = pytest.mark.slow


def test_smoke_runs_all_stages_and_writes_the_report(smoke_trained):
    _, args, _, _, _ = smoke_trained
    every = "stages=[prepare,train,extract,translate,compress,analyze,plot]"
    all_stages = [a.replace("stages=[prepare,train]", every) for a in args]
    result = run_pipeline(*all_stages)
    assert result.returncode == 0, result.stderr[-3000:]
    nodes = plan(*[a for a in all_stages if not a.startswith("stages=")])
    analyze, plot = nodes["analyze"].dir, nodes["plot"].dir  # (other tests analyse subsets)
    tables = {p.stem for p in (analyze / "tables").glob("*.parquet")}
    assert {"convergence", "tagger", "layer_matrix", "per_tag", "concentration",
            "claims", "nmt_stages", "compression", "compression_summary"} <= tables
    compression = pd.read_parquet(analyze / "tables" / "compression.parquet")
    assert set(compression.model) == set(nodes["compress"].units)  # every kind with a quality
    assert {"projection", "pruning"} == set(compression.compress)
    assert "bleu" in set(compression.measure)  # decoded at the last checkpoint
    full = compression[(compression.k == compression.dim) & (compression.measure != "bleu")]
    assert len(full) and (full.relative_change.abs() <= 1e-5).all()  # float32's identity
    claims = pd.read_parquet(analyze / "tables" / "claims.parquet")
    assert {"C6", "C6b", "C6c"} <= set(claims.claim)
    c5 = pd.read_parquet(analyze / "tables" / "claims.parquet").query("claim == 'C5'")
    assert set(c5.probe) == {"test2016", "pud"}  # one row per set, NA ones with the reason
    assert all(v != "NA" or "undefined" in d for v, d in zip(c5.verdict, c5.detail, strict=True))
    for figure in ("f7_nmt_stages", "f8_compression", "f9_pruning"):
        assert any(p.name.startswith(figure) for p in (plot / "figures").glob("*.png"))
    captions = json.loads((plot / "captions.json").read_text())
    assert len(captions) >= 10
    pngs = list((plot / "figures").glob("*.png"))
    assert len(pngs) >= 10 and all(p.stat().st_size > 0 for p in pngs)
    html = (plot / "report.html").read_text()
    assert "data:image/png;base64," in html and "C1" in html
    assert "Has each model finished learning?" in html  # the endpoint, per model and part
    models = pd.read_parquet(analyze / "tables" / "models.parquet").set_index("model")
    assert models.loc["lstm_lm_paper", "lr_share"] == 1.0  # smoke: a constant rate (plateau
    assert not models.loc["lstm_lm_paper", "endpoint_lr"]  # never reached in 30 updates)
    assert 0 < models.loc["lstm_lm_paper", "late_cka_min"] <= 1
    redraw = run_pipeline(*[a.replace(every, "stages=[plot]") for a in all_stages]
                          + ["force=[plot]"])
    assert redraw.returncode == 0, redraw.stderr[-3000:]
    assert "stage plot: done" in redraw.stdout + redraw.stderr
