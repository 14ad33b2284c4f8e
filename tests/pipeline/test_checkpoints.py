"""checkpoints.csv sha256s: a changed or missing checkpoint is refused, by path."""

import hashlib

import pandas as pd
import pytest

from pipeline.checkpoints import CSV, CheckpointError, checkpoint_path, verify


def make_model(tmp_path, contents):
    (tmp_path / "checkpoints").mkdir()
    rows = []
    for step, data in contents.items():
        name = f"step_{step:07d}.pt"
        (tmp_path / "checkpoints" / name).write_bytes(data)
        rows.append({"step": step, "file": name, "sha256": hashlib.sha256(data).hexdigest()})
    pd.DataFrame(rows).to_csv(tmp_path / CSV, index=False)
    return tmp_path


def test_intact_checkpoints_verify(tmp_path):
    model = make_model(tmp_path, {0: b"init", 10: b"final"})
    assert list(verify(model).step) == [0, 10]
    assert checkpoint_path(model, 10) == model / "checkpoints" / "step_0000010.pt"


def test_modified_checkpoint_is_refused_by_path(tmp_path):
    model = make_model(tmp_path, {0: b"init", 10: b"final"})
    (model / "checkpoints" / "step_0000010.pt").write_bytes(b"tampered")
    with pytest.raises(CheckpointError, match=r"step_0000010.pt: sha256 .* does not match.*"
                       r"force=\[train\] retrains the model"):
        verify(model)
    with pytest.raises(CheckpointError, match="step_0000010.pt"):
        checkpoint_path(model, 10)
    assert checkpoint_path(model, 0).name == "step_0000000.pt"  # others stay usable


def test_missing_checkpoint_and_unknown_step(tmp_path):
    model = make_model(tmp_path, {0: b"init", 10: b"final"})
    (model / "checkpoints" / "step_0000000.pt").unlink()
    with pytest.raises(CheckpointError, match="step_0000000.pt: checkpoint listed"):
        verify(model)
    with pytest.raises(CheckpointError, match="no checkpoint at step 5"):
        checkpoint_path(model, 5)
