"""pipeline.stages.compress: which checkpoints and fit tokens a model's compression reads, and
what it is refused."""

import json
import os
import subprocess
import sys

import pytest

from pipeline.stages.compress import chosen, compresses, fit_probe, stream_seed


def test_chosen_takes_the_stored_step_nearest_each_share_once():
    steps = [0, 1, 2, 4, 8, 100, 200, 300, 400]
    assert chosen(steps, [0.25, 0.5, 0.75, 1.0], 400) == [100, 200, 300, 400]
    assert chosen([360, 400], [0.25, 0.5, 0.75, 1.0], 400) == [360, 400]  # a tagger's two
    assert chosen(steps, None, 400) == steps


def test_the_fit_probe_is_the_first_listed_that_the_model_extracted(tmp_path):
    (tmp_path / "model.json").write_text(json.dumps({"gradients": {"pud": True}}))
    assert fit_probe(tmp_path, ["brown_probe", "pud"]) == "pud"
    with pytest.raises(ValueError, match=r"extracted none of them \(it has \['pud'\]\)"):
        fit_probe(tmp_path, ["brown_probe"])


def test_only_kinds_with_a_quality_measure_have_a_unit():
    assert compresses(None, {"kind": "lstm_lm"}) and compresses(None, {"kind": "transformer_nmt"})
    assert not compresses(None, {"kind": "hf_causal_lm"})


def test_stream_seed_is_stable_across_processes():
    """Another interpreter (its own string-hash seed) gives the same seed."""
    code = "from pipeline.stages.compress import stream_seed; print(stream_seed(1, 'lstm_1'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={**os.environ, "PYTHONHASHSEED": "123"})
    assert int(other.stdout) == stream_seed(1, "lstm_1")
    assert stream_seed(1, "lstm_1") != stream_seed(2, "lstm_1")
