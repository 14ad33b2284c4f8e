"""analysis.report and the stage functions: report.md / report.html from tables and figures."""

import base64
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from synthstudy import build_study, plotted

from analysis import report

REPO = Path(__file__).parents[2]


def test_report_markdown_lists_settings_claims_and_every_figure():
    out, summary, tables = plotted()
    md = (out / "report.md").read_text()
    for name in summary["figures"]:
        assert f"figures/{name}.png" in md
    captions = re.findall(r"^(F\d|S\d).*", md, flags=re.M)
    assert len(captions) >= len(summary["figures"])
    for key in ("variance_rule", "fixed_k", "claims.threshold", "max_tokens"):
        assert f"`{key}`" in md
    s = tables["claims_summary"]
    for row in s.itertuples():  # every claim/metric verdict is in the report
        assert re.search(rf"\| {row.claim} \| {row.metric} \|.*\| {row.verdict} \|", md)
    assert "per_tag_N" in md  # data sizes with the per-tag N


def test_report_html_is_self_contained():
    out, summary, _ = plotted()
    html = (out / "report.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(images) == len(summary["figures"])
    assert base64.b64decode(images[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "src='figures/" not in html and 'src="figures/' not in html
    assert 'class="PASS"' in html and 'class="FAIL"' in html


def test_markdown_table_format():
    df = pd.DataFrame({"a": [1.23456, np.nan], "b": ["x|y", "z"]})
    lines = report.markdown_table(df).splitlines()
    assert lines[0] == "| a | b |" and lines[2] == "| 1.235 | x\\|y |"
    assert lines[3] == "|  | z |"
    assert report.markdown_table(pd.DataFrame()) == "_(none)_"


def test_analyze_stage_writes_parquet_and_csv(tmp_path):
    """run_analyze on a synthetic extract/train layout, with the real analysis config."""
    from pipeline.analyze_stage import run_analyze

    runs = build_study(tmp_path / "extract_src")
    extract, train = tmp_path / "extract", tmp_path / "train"
    models = {}
    for run in runs[:2]:  # the LM and the NMT model: enough to exercise the stage
        (extract / run.name).mkdir(parents=True)
        (extract / run.name / "synth").symlink_to(run.stores["synth"])
        (train / run.name).mkdir(parents=True)
        run.checkpoints.to_csv(train / run.name / "checkpoints.csv", index=False)
        models[run.name] = {"kind": run.kind}
    analysis = OmegaConf.load(REPO / "conf" / "analysis" / "default.yaml")
    analysis.per_tag.update(min_n=30, max_n=60)
    analysis.sanity.update(dims=8, token_counts=[40, 100])
    analysis.concentration.n_boot = 20
    cfg = OmegaConf.create({"analysis": analysis, "seed": 2, "model": models,
                            "train": {"parallel": 2}})  # stores analysed in 2 processes
    summary = run_analyze(cfg, tmp_path / "out", {"extract": extract, "train": train})
    tables = tmp_path / "out" / "tables"
    for name, rows in summary["tables"].items():
        assert (tables / f"{name}.parquet").is_file() and (tables / f"{name}.csv").is_file()
        assert len(pd.read_parquet(tables / f"{name}.parquet")) == rows
    assert summary["tables"]["convergence"] > 0 and summary["tables"]["claims"] > 0
    conv = pd.read_parquet(tables / "convergence.parquet")
    assert set(conv.seed) == {2} and set(conv.model) == {"lm", "nmt"}
    assert "C1/svcca" in summary["claims"]


def _aggregate_module():
    spec = importlib.util.spec_from_file_location("aggregate", REPO / "scripts" / "aggregate.py")
    agg = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(agg)
    return agg


def test_aggregate_pools_seeds_with_intervals(tmp_path):
    agg = _aggregate_module()
    rows = []
    for seed, shift in ((1, 0.0), (2, 0.1), (3, 0.2)):
        for step in (0, 10):
            rows.append(dict(analysis="convergence", model="lm", kind="lm", seed=seed,
                             probe="p", side="lm", layer_a="embed", step_a=step,
                             metric="cka", value=0.5 + shift + step / 100, k_a=8, k_b=8,
                             n_tokens=100))
    pooled = agg.pool(pd.DataFrame(rows), value_columns=["value"])
    assert len(pooled) == 2 and (pooled.n_seeds == 3).all()
    first = pooled.sort_values("step_a").iloc[0]
    assert np.isclose(first.value, 0.6)
    half = 4.302652729911275 * 0.1 / np.sqrt(3)  # t(0.975, df=2) * sd / sqrt(n)
    assert np.isclose(first.ci_high - first.value, half) and np.isclose(first.value - first.ci_low,
                                                                         half)


def test_aggregate_finds_each_seeds_representations_for_s2(tmp_path):
    """seed_table follows each analyze stage's recorded inputs to its extract and train
    stages (the artifact layout the pipeline writes) and compares the seeds' models."""
    agg = _aggregate_module()
    exp = tmp_path / "exp"
    analysis = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "analysis" / "default.yaml"))
    folders = []
    # seed 2's stores are copies of seed 1's (same tokens, same states); seed 3's have other
    # tokens, so it cannot be compared
    for seed, store_seed in ((1, 0), (2, 0), (3, 1)):
        runs = build_study(tmp_path / f"stores{seed}", seed=store_seed)
        extract, train = exp / "extract" / f"e{seed}", exp / "train" / f"t{seed}"
        models = {}
        for run in runs:
            (extract / run.name).mkdir(parents=True)
            (extract / run.name / "synth").symlink_to(run.stores["synth"])
            (train / run.name).mkdir(parents=True)
            run.checkpoints.to_csv(train / run.name / "checkpoints.csv", index=False)
            models[run.name] = {"kind": run.kind, "tags": run.tags}
        (train / ".done.json").write_text(json.dumps({"config": {"model": models,
                                                                 "seed": seed}}))
        stage = exp / "analyze" / f"a{seed}"
        (stage / "tables").mkdir(parents=True)
        (stage / ".done.json").write_text(json.dumps({
            "config": {"analysis": analysis},
            "inputs": {"extract": f"e{seed}", "train": f"t{seed}"}}))
        folders.append(stage / "tables")
    assert agg.find_runs(tmp_path, None) == {"exp": folders}
    table = agg.seed_table(folders)
    assert set(zip(table.seed_a, table.seed_b, strict=True)) == {(1, 2)}
    assert set(table.model) == {"lm", "nmt", "tagger_pos", "tagger_semtag", "tagger_topic"}
    np.testing.assert_allclose(table.value, 1.0, atol=1e-6)  # a model vs an exact copy
    assert (table.baseline < 0.9).all()
    assert agg.seed_table(folders[:1]).empty


def test_aggregate_keeps_the_newest_run_of_each_seed():
    agg = _aggregate_module()

    def run(seed):
        return {"checkpoints": pd.DataFrame({"seed": [seed, seed], "step": [0, 10]})}

    members = [(Path("old"), run(1)), (Path("two"), run(2)), (Path("new"), run(1))]
    assert [f.name for f, _ in agg.one_run_per_seed(members)] == ["new", "two"]
