"""analysis.report and the stage functions: report.md / report.html from tables and figures."""

import base64
import re
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from synthstudy import build_study, plotted, stage_runs, write_units

from analysis import report

REPO = Path(__file__).parents[2]


def test_report_markdown_lists_settings_claims_and_every_figure():
    out, summary, tables = plotted()
    md = (out / "report.md").read_text()
    for name in summary["figures"]:
        assert f"figures/{name}.png" in md
    captions = re.findall(r"^(F\d|S\d).*", md, flags=re.M)
    assert len(captions) >= len(summary["figures"])
    for key in ("variance_rule", "fixed_k", "claims.convergence_threshold", "max_tokens",
                "per_tag.max_n"):
        assert f"`{key}`" in md
    a = tables["answer"]
    for row in a[a.role == "primary"].itertuples():  # every claim's verdict opens the report
        assert re.search(rf"\| {row.claim} \| [^|]* \| {row.verdict} \| {row.metric} \|", md)
    assert "1 seed: no test across seeds; run scripts/reproduce.sh" in md.split("## Figures")[0]
    assert "per_tag_N" in md  # data sizes with the per-tag N


def test_report_html_is_self_contained():
    out, summary, _ = plotted()
    html = (out / "report.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(images) == len(summary["figures"])
    assert base64.b64decode(images[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "src='figures/" not in html and 'src="figures/' not in html
    assert 'class="PASS"' in html and 'class="FAIL"' in html
    links = set(re.findall(r'<a href="#([^"]+)">', html))  # the claims table to its figures
    assert links and links <= set(re.findall(r"<figure id='([^']+)'>", html))
    assert html.count("<figcaption>Look for: ") == len(summary["figures"])


def test_markdown_table_format():
    df = pd.DataFrame({"a": [1.23456, np.nan], "b": ["x|y", "z"]})
    lines = report.markdown_table(df).splitlines()
    assert lines[0] == "| a | b |" and lines[2] == "| 1.235 | x\\|y |"
    assert lines[3] == "|  | z |"
    assert report.markdown_table(pd.DataFrame()) == "_(none)_"


def test_analyze_stage_writes_parquet_and_csv():
    """run_analyze on synthetic train, extract and translate units, with the real analysis
    config, in two processes."""
    summary, out = stage_runs()["analyze"][1]
    tables = out / "tables"
    for name, rows in summary["tables"].items():
        assert (tables / f"{name}.parquet").is_file() and (tables / f"{name}.csv").is_file()
        assert len(pd.read_parquet(tables / f"{name}.parquet")) == rows
    assert summary["tables"]["convergence"] > 0 and summary["tables"]["claims"] > 0
    conv = pd.read_parquet(tables / "convergence.parquet")
    assert set(conv.seed) == {1} and set(conv.model) == {"lm", "nmt"}
    models = pd.read_parquet(tables / "models.parquet").set_index("model")
    assert models.loc["lm", "test_ppl"] == 11.0 and models.loc["nmt", "family"] == "transformer"
    assert "C1/svcca" in summary["verdicts"]


def test_the_analysis_seed_not_the_model_seed_picks_tokens_and_shuffles(tmp_path):
    """Two model seeds over the same stores give the same rows and values: the subsample,
    shuffles and bootstrap follow analysis.seed only, which every table records."""
    from pipeline.stages.analyze import run_analyze

    runs = build_study(tmp_path / "stores")
    extract, train = write_units(runs[:1], tmp_path)
    analysis = OmegaConf.load(REPO / "conf" / "analysis" / "default.yaml")
    analysis.max_tokens = 300  # a subsample of the 400 tokens
    analysis.per_tag.update(min_n=30, max_n=60)
    analysis.sanity.update(dims=8, token_counts=[40, 100])
    analysis.concentration.n_boot = 20
    analysis.claims.n_permutations, analysis.rsa_max_rows = 10, 300  # small and quick
    out = {}
    for seed in (1, 2):
        cfg = OmegaConf.create({"analysis": analysis, "seed": seed,
                                "train": {"parallel": 1, "device": "cpu"}})
        run_analyze(cfg, tmp_path / f"out{seed}", {"extract": extract, "train": train})
        out[seed] = pd.read_parquet(tmp_path / f"out{seed}" / "tables" / "convergence.parquet")
    assert (out[1].analysis_seed == 0).all()
    pd.testing.assert_series_equal(out[1].value, out[2].value)
    pd.testing.assert_series_equal(out[1].baseline, out[2].baseline)
