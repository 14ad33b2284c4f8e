"""pipeline.interpolation with analysis.stability.barrier: the line between two models
reproduces each end exactly, two identical models have no barrier, and a pair of weights with
a known loss on the line gives the known barrier."""

import numpy as np
import pytest
import torch
from torch import nn

from analysis.stability import barrier
from pipeline.interpolation import lerp_state, path_values

ALPHAS = np.linspace(0.0, 1.0, 11)


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Embedding(9, 4), nn.Linear(4, 9)).double()


def _loss(data):
    tokens, targets = data

    def measure(model) -> dict:
        with torch.no_grad():
            logits = model(tokens)
            return {"loss": float(nn.functional.cross_entropy(logits, targets))}
    return measure


def test_the_ends_of_the_line_are_each_models_own_loss_exactly():
    a, b = _model(0), _model(1)
    data = (torch.arange(9), torch.arange(9).flip(0))
    measure = _loss(data)
    own_a, own_b = measure(a), measure(b)
    rows = path_values(_model(2), a.state_dict(), b.state_dict(), ALPHAS, measure)
    assert [r["alpha"] for r in rows] == list(ALPHAS)
    assert rows[0]["loss"] == own_a["loss"] and rows[-1]["loss"] == own_b["loss"]
    assert len({r["loss"] for r in rows}) == len(ALPHAS)  # the inner points differ


def test_two_identical_models_have_no_barrier():
    a = _model(0)
    rows = path_values(_model(2), a.state_dict(), a.state_dict(), ALPHAS,
                       _loss((torch.arange(9), torch.arange(9))))
    assert barrier([r["alpha"] for r in rows], [r["loss"] for r in rows], False) == (0.0, 0.0)


class Bowl(nn.Module):
    """One weight w with loss (w^2 - 1)^2: 0 at w = -1 and 1, 1 at w = 0."""

    def __init__(self, w: float):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float64))


def test_a_pair_with_a_known_loss_on_the_line_gives_the_known_barrier():
    rows = path_values(Bowl(0.0), Bowl(-1.0).state_dict(), Bowl(1.0).state_dict(), ALPHAS,
                       lambda m: {"loss": float((m.w.detach() ** 2 - 1) ** 2)})
    value, at = barrier([r["alpha"] for r in rows], [r["loss"] for r in rows], False)
    assert (value, at) == (1.0, 0.5)  # the middle, w = 0 exactly (torch.lerp)
    quality = [-r["loss"] for r in rows]  # the same as a quality where higher is better
    assert barrier([r["alpha"] for r in rows], quality, True) == (1.0, 0.5)


def test_models_that_differ_in_more_than_their_floating_weights_are_refused():
    a = {"w": torch.zeros(2), "count": torch.tensor(1)}
    with pytest.raises(ValueError, match="non-floating tensor differs"):
        lerp_state(a, {"w": torch.ones(2), "count": torch.tensor(2)}, 0.5)
    with pytest.raises(ValueError, match="shapes"):
        lerp_state(a, {"w": torch.ones(3), "count": torch.tensor(1)}, 0.5)
    with pytest.raises(ValueError, match="differ in their tensors"):
        lerp_state(a, {"w": torch.ones(2)}, 0.5)
    assert lerp_state(a, {"w": torch.ones(2), "count": torch.tensor(1)}, 0.25)["count"] == 1
