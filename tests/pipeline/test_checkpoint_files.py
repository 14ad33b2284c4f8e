"""Whether a checkpoint opens, on files made here: safetensors cut in its header and in its
data, a broken config.json, an index naming a missing shard, a folder without weights, and
torch saves (zip and the older format) cut short."""

import json
import shutil
import struct

import pytest
import torch
from safetensors.torch import save_file

from pipeline import checkpoint_files
from pipeline.checkpoint_files import problem, safetensors_problem, torch_file_problem
from pipeline.checkpoints import CheckpointError

TENSORS = {"a.weight": torch.zeros(64), "b.weight": torch.ones(8, 8), "c.bias": torch.ones(3)}


def layout(file):
    """(data start, {name: (begin, end)}) read from the header as the format defines it."""
    raw = file.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    return 8 + n, {k: v["data_offsets"] for k, v in header.items() if k != "__metadata__"}


def cut(file, size):
    file.write_bytes(file.read_bytes()[:size])


@pytest.fixture
def revision(tmp_path):
    folder = tmp_path / "step2000"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt_neox"}))
    save_file(TENSORS, folder / "model.safetensors")
    return folder


def test_a_whole_revision_opens(revision):
    assert problem(revision) is None


def test_safetensors_cut_in_the_header(revision):
    file = revision / "model.safetensors"
    start, _ = layout(file)
    size = start - 5
    cut(file, size)
    assert safetensors_problem(file) == (
        f"truncated: the header is {start - 8} bytes, the file has {size} "
        "(or not a safetensors file)")
    cut(file, 3)
    assert safetensors_problem(file).startswith("truncated: 3 bytes")


@pytest.mark.parametrize("tensor", sorted(TENSORS))
def test_safetensors_cut_inside_a_tensor_names_it(revision, tensor):
    file = revision / "model.safetensors"
    start, offsets = layout(file)
    begin, end = offsets[tensor]
    size = start + (begin + end) // 2
    cut(file, size)
    assert safetensors_problem(file) == (
        f"truncated: tensor {tensor} ends at byte {start + end} of {size}")


def test_a_corrupt_header_is_not_json(revision):
    file = revision / "model.safetensors"
    raw = bytearray(file.read_bytes())
    raw[9] = ord("#")
    file.write_bytes(bytes(raw))
    assert safetensors_problem(file).startswith("header is not valid JSON")


def test_config_json_that_does_not_parse(revision):
    (revision / "config.json").write_text('{"model_type": "gpt_neox",')
    where, what = problem(revision)
    assert where == revision / "config.json" and what.startswith("not valid JSON")


def test_a_folder_without_weights_or_config(revision):
    (revision / "model.safetensors").unlink()
    assert problem(revision) == (revision, "no weights file (neither *.safetensors nor "
                                           "pytorch_model.bin)")
    (revision / "config.json").unlink()
    assert problem(revision)[0] == revision / "config.json"


def test_an_index_naming_a_missing_shard(revision):
    (revision / "model.safetensors").rename(revision / "model-00001-of-00002.safetensors")
    (revision / checkpoint_files.INDEX).write_text(json.dumps({"weight_map": {
        "a.weight": "model-00001-of-00002.safetensors",
        "b.weight": "model-00002-of-00002.safetensors"}}))
    assert problem(revision) == (revision / checkpoint_files.INDEX, "lists shards that are "
                                 "missing: model-00002-of-00002.safetensors")


@pytest.mark.parametrize("zipped", [True, False])
def test_torch_saves_whole_and_cut(tmp_path, zipped):
    file = tmp_path / "checkpoint_1_5.pt"
    torch.save({"model": TENSORS, "optimizer_history": [{"num_updates": 5}]}, file,
               _use_new_zipfile_serialization=zipped)
    assert torch_file_problem(file) is None
    cut(file, file.stat().st_size - 40)
    where, what = torch_file_problem(file)
    assert where == file
    assert what.startswith("truncated: a zip archive" if zipped else "neither torch's zip")


def test_check_series_names_step_path_and_the_others(tmp_path, revision):
    other = tmp_path / "step4000"
    shutil.copytree(revision, other)
    for folder in (revision, other):
        cut(folder / "model.safetensors", 20)
    good = tmp_path / "step0"
    shutil.copytree(revision, good)
    save_file(TENSORS, good / "model.safetensors")
    with pytest.raises(CheckpointError) as refused:
        checkpoint_files.check_series([(0, good), (2000, revision), (4000, other)])
    message = str(refused.value)
    assert message.startswith(f"revision step2000 ({revision / 'model.safetensors'}): "
                              "truncated: the header is")
    assert message.endswith("(1 more refused: steps 4000)") and "\n" not in message
    checkpoint_files.check_series([(0, good)])
