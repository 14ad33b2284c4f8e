"""`experiment=smoke` through every stage: tables, every figure, and the report; then `plot`
alone redraws from the tables without loading a model."""

import json

import pandas as pd
import pytest
from conftest import plan, run_pipeline

pytestmark = pytest.mark.slow


def test_smoke_runs_all_stages_and_writes_the_report(smoke_trained):
    _, args, _, _, _ = smoke_trained
    every = "stages=[prepare,train,extract,translate,analyze,plot]"
    all_stages = [a.replace("stages=[prepare,train]", every) for a in args]
    result = run_pipeline(*all_stages)
    assert result.returncode == 0, result.stderr[-3000:]
    nodes = plan(*[a for a in all_stages if not a.startswith("stages=")])
    analyze, plot = nodes["analyze"].dir, nodes["plot"].dir  # (other tests analyse subsets)
    tables = {p.stem for p in (analyze / "tables").glob("*.parquet")}
    assert {"convergence", "tagger", "layer_matrix", "per_tag", "concentration",
            "claims", "nmt_stages"} <= tables
    c5 = pd.read_parquet(analyze / "tables" / "claims.parquet").query("claim == 'C5'")
    assert set(c5.probe) == {"test2016", "pud"}  # one row per set, NA ones with the reason
    assert all(v != "NA" or "undefined" in d for v, d in zip(c5.verdict, c5.detail, strict=True))
    assert any(p.name.startswith("f7_nmt_stages") for p in (plot / "figures").glob("*.png"))
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
