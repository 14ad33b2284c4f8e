"""A user's own fairseq checkpoints (`kind: fairseq_series`): the smoke LM's checkpoints, copied
to a folder of their own, analyse to the same tables as the trained model; the import unit's
key follows the files' contents."""

import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import plan, run_pipeline

from pipeline.models.external import step_of

pytestmark = pytest.mark.slow


def series_args(folder, dictionary, name="lstm_lm_paper"):
    """The command-line overrides that make ``name`` the only model, a fairseq series
    (smoke's own sizes for a preset of that name are dropped first)."""
    drop = [f"~model.{name}"] if name == "lstm_lm_paper" else []
    return ["model=[]", *drop,
            f"+model.{name}={{kind: fairseq_series, adapter: lstm_lm, checkpoints: {folder}, "
            f"dictionary: {dictionary}, layers: 1, embed_dim: 32, hidden: 32}}"]


def test_step_names():
    assert step_of("step1000") == 1000 and step_of("step_0000030.pt") == 30
    assert step_of("checkpoint_2_450.pt") == 450 and step_of("main") is None
    assert step_of("pythia-70m-step143000") == 143000


def test_a_fairseq_series_analyses_to_the_trained_models_tables(smoke_trained, mirror,
                                                                 tmp_path):
    art, args, _, train_units, prepare = smoke_trained
    folder = tmp_path / "series"
    folder.mkdir()
    for ckpt in (train_units["lstm_lm_paper"] / "checkpoints").glob("step_*.pt"):
        shutil.copy(ckpt, folder / ckpt.name)
    common = ["experiment=smoke", f"mirror={mirror}",
              "stages=[prepare,train,extract,compress,analyze]"]
    trained = run_pipeline(*common, f"artifacts_dir={art}", "model=[lstm_lm_paper]")
    assert trained.returncode == 0, trained.stderr[-3000:]
    theirs = tmp_path / "art"
    shutil.copytree(prepare.parent, theirs / "smoke" / "prepare")
    dictionary = prepare / "lm" / "bin" / "lm"
    imported = run_pipeline(*common, f"artifacts_dir={theirs}",
                            *series_args(folder, dictionary))
    assert imported.returncode == 0, imported.stderr[-3000:]
    ours = plan("experiment=smoke", f"mirror={mirror}", f"artifacts_dir={art}",
                "model=[lstm_lm_paper]")["analyze"].dir / "tables"
    nodes = plan("experiment=smoke", f"mirror={mirror}", f"artifacts_dir={theirs}",
                 *series_args(folder, dictionary))
    source = nodes["train"].units["lstm_lm_paper"].dir / "source.json"
    assert str(folder) in source.read_text()
    tables = nodes["analyze"].dir / "tables"
    compared = 0
    for path in sorted(ours.glob("*.parquet")):
        if path.stem in ("models", "checkpoints", "settings"):  # the training's records and
            continue                                           # evaluation: not imported
        a, b = pd.read_parquet(path), pd.read_parquet(tables / path.name)
        assert a.shape == b.shape, path.stem
        for column in a.columns:
            if column in ("kind", "claim", "statement"):  # C4 is stated per kind
                continue
            if pd.api.types.is_float_dtype(a[column]):
                x, y = a[column].to_numpy(float), b[column].to_numpy(float)
                assert np.array_equal(np.isnan(x), np.isnan(y)), (path.stem, column)
                ok = ~np.isnan(x)
                assert np.allclose(x[ok], y[ok], rtol=0, atol=1e-12), (path.stem, column)
            else:
                assert a[column].astype(str).equals(b[column].astype(str)), (path.stem, column)
        compared += len(a)
    assert compared > 1000


def test_a_changed_checkpoint_changes_the_import_key(tmp_path, mirror, smoke_prepared):
    art = smoke_prepared[0]
    folder = tmp_path / "series"
    folder.mkdir()
    for step in (0, 5):
        (folder / f"checkpoint_1_{step}.pt").write_bytes(b"weights %d" % step)
    (folder / "checkpoint_last.pt").write_bytes(b"a duplicate")
    dictionary = tmp_path

    def unit():
        nodes = plan("experiment=smoke", f"mirror={mirror}", f"artifacts_dir={art}",
                     *series_args(folder, dictionary, name="theirs"))
        return nodes["train"].units["theirs"], nodes["extract"].units["theirs"]

    (train, extract), (again, _) = unit(), unit()
    assert train.key == again.key
    assert sorted(train.inputs) == ["checkpoint:0", "checkpoint:5", "prepare"]
    (folder / "checkpoint_1_5.pt").write_bytes(b"other weights")
    changed, changed_extract = unit()
    assert changed.key != train.key and changed_extract.key != extract.key
    assert changed.inputs["checkpoint:0"] == train.inputs["checkpoint:0"]
