"""Extraction on CUDA equals extraction on the CPU: every adapter's states and per-token
gradients of a trained smoke model, both in float64 so the bound holds by construction (runs
only where CUDA exists)."""

import pytest
import torch
from exactness import assert_rows_close, float64_softmax, load_float64  # noqa: F401

from pipeline.models import adapter
from pipeline.stages import extract

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]
PROBES = {"lstm_lm_paper": "brown_probe", "tagger_pos": "brown_probe",
          "transformer_lm_small": "brown_probe", "transformer_nmt_small": "pud"}


@pytest.mark.parametrize("name", sorted(PROBES))
def test_cuda_states_and_gradients_equal_cpu(smoke_trained, name):
    model, task, spec, rows = load_float64(smoke_trained, name, PROBES[name], 300)
    kind = adapter(spec)
    label = kind.label_column(spec, extract.probe_manifest(smoke_trained[4])[PROBES[name]])
    cpu = kind.states(model, task, spec, rows, label, True, 8)
    gpu = kind.states(model.cuda(), task, spec, rows, label, True, 8)
    assert next(model.parameters()).is_cuda
    for part, (c, g) in enumerate(zip(cpu, gpu, strict=True)):
        assert sorted(c) == sorted(g) and (part == 0 or c), name
        for layer in c:
            assert_rows_close(torch.as_tensor(g[layer]), torch.as_tensor(c[layer]))
