"""analysis.dynamics: the analysis as a whole, deterministic, and the same on CUDA."""

import numpy as np
import pandas as pd
import pytest
import torch
from synthstudy import (
    build_study,
    small_settings,
)

from analysis.runs import Probe
from analysis.tables.concentration import concentration_tables
from analysis.tables.convergence import over_training
from analysis.tables.per_tag import per_tag
from analysis.tables.sanity import sensitivity


def test_analysis_is_deterministic(tmp_path):
    runs = build_study(tmp_path, seed=1)
    s = small_settings()
    p = Probe.open(runs[0], "synth")
    one = per_tag(p, s)
    two = per_tag(Probe.open(runs[0], "synth"), s)
    pd.testing.assert_frame_equal(one, two)
    c1, f1 = concentration_tables(p, s)
    c2, f2 = concentration_tables(p, s)
    assert len(c1) > 0 and len(f1) > 0
    pd.testing.assert_frame_equal(c1, c2)
    pd.testing.assert_frame_equal(f1, f2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_analysis_on_cuda_equals_cpu(tmp_path):
    """analysis.device=cuda: the same tables as on the CPU, to float tolerance."""
    runs = build_study(tmp_path, seed=1)
    p = Probe.open(runs[0], "synth")
    for fn in (over_training, per_tag, sensitivity):
        cpu, gpu = (fn(p, small_settings(device=d)) for d in ("cpu", "cuda"))
        for name in cpu if isinstance(cpu, dict) else [None]:
            a, b = (cpu[name], gpu[name]) if name else (cpu, gpu)
            assert list(a.columns) == list(b.columns) and len(a) == len(b), (fn, name)
            for col in ("value", "baseline"):
                if col in a:
                    np.testing.assert_allclose(b[col], a[col], rtol=1e-6, atol=1e-9,
                                               err_msg=f"{fn.__name__} {name} {col}")
