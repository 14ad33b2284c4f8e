"""Trusting the artifacts, on the smoke experiment: two runs at once on one artifacts dir
share one valid result; a damaged cached extraction is noticed and redone; a damaged resumed
one is repaired."""

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from conftest import REPO, plan, run_pipeline, units

from analysis import repstore
from pipeline import store
from pipeline.config import model_specs, typed
from pipeline.stages import extract

pytestmark = pytest.mark.slow


def test_two_concurrent_runs_share_one_valid_result(smoke_prepared, mirror, tmp_path):
    shutil.copytree(smoke_prepared[0] / "smoke" / "prepare", tmp_path / "smoke" / "prepare")
    args = ["experiment=smoke", "stages=[prepare,train]", "model=[lstm_lm_paper]",
            f"mirror={mirror}", f"artifacts_dir={tmp_path}"]
    procs = [subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
    both = "\n".join(outputs)
    assert "made by another run meanwhile" in both  # the second waited, then reused
    assert len(list((tmp_path / "smoke" / "prepare").glob("*/.done.json"))) == 1
    (done,) = (tmp_path / "smoke" / "train" / "lstm_lm_paper").glob("*/.done.json")
    table = pd.read_csv(done.parent / "checkpoints.csv")
    assert table.step.is_unique and table.step.is_monotonic_increasing


def test_a_damaged_cached_extraction_is_noticed_and_redone(smoke_trained):
    art, args, *_ = smoke_trained
    run_args = [a for a in args if not a.startswith("stages=")] + [
        "stages=[prepare,train,extract]"]
    first = run_pipeline(*run_args)
    assert first.returncode == 0, first.stderr[-3000:]
    unit = units(plan(*[a for a in args if not a.startswith("stages=")]), "extract")["tagger_pos"]
    info = json.loads((unit / "model.json").read_text())
    victim = repstore.step_dir(unit / "brown_probe", info["steps"][-1])
    shutil.rmtree(victim)
    with pytest.raises(store.Invalid, match="missing or unfinished"):
        extract.validate_unit(unit)
    again = run_pipeline(*run_args)
    assert again.returncode == 0, again.stderr[-3000:]
    text = again.stdout + again.stderr
    assert "extract tagger_pos: cached result" in text and "recomputing" in text
    assert "extract lstm_lm_paper: cached at" in text
    extract.validate_unit(unit)  # sound again


def test_a_broken_resumed_extraction_is_repaired(smoke_trained, tmp_path):
    """A killed run left a truncated tokens.parquet and no layers.json in the scratch dir:
    resuming rewrites them instead of failing (or committing them)."""
    art, args, _, train_units, prepared = smoke_trained
    from conftest import compose

    cfg = compose(*[a for a in args if not a.startswith("stages=")])
    spec = model_specs(cfg)["tagger_pos"]
    out = tmp_path / "unit.partial"
    root = out / "brown_probe"
    root.mkdir(parents=True)
    (root / "tokens.parquet").write_bytes(b"PAR1 truncated")
    ex = typed(cfg.extract, extract.ExtractConfig)
    extract.extract_model("tagger_pos", spec, train_units["tagger_pos"], prepared, out, ex)
    extract.validate_unit(out)
    assert len(repstore.tokens(root)) > 0 and repstore.layers(root)
