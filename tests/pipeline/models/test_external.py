"""Importing an external series (the train unit of `hf_causal_lm` and `fairseq_series`): every
checkpoint is opened first, and a truncated or broken one is refused with its step and path
before anything is written."""

import json
import shutil

import pandas as pd
import pytest
import torch
from tinyhf import revisions

from pipeline import checkpoints
from pipeline.checkpoints import CheckpointError
from pipeline.models import complete
from pipeline.models.external import import_series

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Tiny GPT-NeoX revisions step0, step2, step4, made once; each test copies them."""
    return revisions(tmp_path_factory.mktemp("tinyhf") / "revs")[0].parent


@pytest.fixture
def revs(saved, tmp_path):
    return shutil.copytree(saved, tmp_path / "revs")


def hf_spec(folder):
    return complete({"kind": "hf_causal_lm", "revisions": [str(folder)], "steps": None,
                     "subword": "last", "dtype": "float32"})


def data_start_and_tensors(file):
    raw = file.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    return 8 + n, {k: v["data_offsets"] for k, v in header.items() if k != "__metadata__"}


def refused(spec, out) -> str:
    with pytest.raises(CheckpointError) as error:
        import_series("theirs", spec, out)
    assert not (out / checkpoints.CSV).exists() and not (out / "checkpoints").exists()
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_whole_series_imports(revs, tmp_path):
    out = tmp_path / "unit"
    summary = import_series("theirs", hf_spec(revs), out)
    assert summary["checkpoints"] == 3
    table = pd.read_csv(out / checkpoints.CSV)
    assert list(table.step) == [0, 2, 4]
    assert list(table.sha256) == [checkpoints.content_hash(revs / f"step{s}") for s in (0, 2, 4)]


def test_a_revision_cut_in_its_safetensors_header_is_refused(revs, tmp_path):
    file = revs / "step2" / "model.safetensors"
    start, _ = data_start_and_tensors(file)
    file.write_bytes(file.read_bytes()[:start // 2])
    message = refused(hf_spec(revs), tmp_path / "unit")
    assert message.startswith(f"revision step2 ({file}): truncated: the header is "
                              f"{start - 8} bytes, the file has {start // 2}")


def test_a_revision_cut_in_its_tensor_data_is_refused(revs, tmp_path):
    file = revs / "step4" / "model.safetensors"
    start, offsets = data_start_and_tensors(file)
    name, (begin, end) = max(offsets.items(), key=lambda item: item[1][1] - item[1][0])
    size = start + (begin + end) // 2  # in the middle of the largest tensor
    file.write_bytes(file.read_bytes()[:size])
    message = refused(hf_spec(revs), tmp_path / "unit")
    assert message.startswith(f"revision step4 ({file}): truncated: tensor {name} ends at "
                              f"byte {start + end} of {size}; re-download")


def test_a_broken_config_json_is_refused(revs, tmp_path):
    config = revs / "step0" / "config.json"
    config.write_text(config.read_text()[:-20])
    message = refused(hf_spec(revs), tmp_path / "unit")
    assert message.startswith(f"revision step0 ({config}): not valid JSON")


def test_a_truncated_fairseq_checkpoint_is_refused(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    for step in (0, 5):
        torch.save({"model": {"w": torch.full((256,), float(step))},
                    "optimizer_history": [{"num_updates": step}]},
                   folder / f"checkpoint_1_{step}.pt")
    spec = complete({"kind": "fairseq_series", "adapter": "lstm_lm", "checkpoints": str(folder),
                     "dictionary": str(tmp_path), "layers": 1, "embed_dim": 8, "hidden": 8})
    file = folder / "checkpoint_1_5.pt"
    file.write_bytes(file.read_bytes()[:-100])
    message = refused(spec, tmp_path / "unit")
    assert message.startswith(f"checkpoint step5 ({file}): truncated: a zip archive")
