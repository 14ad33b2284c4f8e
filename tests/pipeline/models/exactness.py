"""Helpers of the model-adapter tests (a module, not a conftest.py, which would shadow
tests/conftest.py for `from conftest import`).

The equality checks run the models in float64 (fairseq's float32 softmax casts patched out), so
their bounds hold by construction on any CPU: in float32, rounding alone can move an FFN unit's
pre-activation across the ReLU kink (seen: +3e-8 in fairseq's forward, exactly 0 in the
recomputation), which drops one gradient path for that token."""

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from fairseq import utils as fairseq_utils

from pipeline import checkpoints, evaluate
from pipeline.models import adapter
from pipeline.stages import extract

RTOL = 1e-6  # per-token relative bound in float64; every row measured within 1e-12


@pytest.fixture(scope="module", autouse=True)
def float64_softmax():
    """fairseq's softmax helpers always return float32; keep float64 for the float64 checks."""
    patch = pytest.MonkeyPatch()

    def widen(x):
        return torch.float64 if x.dtype == torch.float64 else torch.float32

    patch.setattr(fairseq_utils, "softmax",
                  lambda x, dim, onnx_trace=False: F.softmax(x, dim=dim, dtype=widen(x)))
    patch.setattr(fairseq_utils, "log_softmax",
                  lambda x, dim, onnx_trace=False: F.log_softmax(x, dim=dim, dtype=widen(x)))
    yield
    patch.undo()


def assert_rows_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = RTOL) -> None:
    """Every row (token) within ``rtol`` of the reference row's norm: ‖a − e‖₂ ≤ rtol·‖e‖₂."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    a = actual.reshape(-1, actual.shape[-1]).double()
    e = expected.reshape(-1, expected.shape[-1]).double()
    err = (a - e).norm(dim=-1)
    bound = rtol * e.norm(dim=-1) + 1e-300
    worst = int(torch.argmax(err / bound))
    assert (err <= bound).all(), (f"{int((err > bound).sum())}/{len(err)} rows off; worst row "
                                  f"{worst}: |Δ| {float(err[worst]):.3g}, |ref| "
                                  f"{float(e[worst].norm()):.3g}")


def load_float64(smoke_trained, name: str, probe: str, max_tokens: int):
    """A trained smoke model's last checkpoint in float64, its task, spec and probe rows."""
    from conftest import compose

    art, args, _, train_units, prepared = smoke_trained
    cfg = compose(*[a for a in args if not a.startswith("stages=")])
    from pipeline.config import model_specs

    spec = model_specs(cfg)[name]
    table = checkpoints.read_table(train_units[name])
    path = checkpoints.checkpoint_path(train_units[name], int(table.step.iloc[-1]))
    model, _, task = evaluate.load_model(path, adapter(spec).load_overrides(spec, prepared))
    rows = extract.probe_rows(pd.read_parquet(prepared / "probe_tokens.parquet"), probe,
                              max_tokens)
    return model.double(), task, spec, rows
