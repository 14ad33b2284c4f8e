"""The linear path between two trained models of one architecture (Frankle et al. 2020): the
weights (1 - α) θ_a + α θ_b, and a measure of the model at each α. Pure torch; no I/O."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch


def lerp_state(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], alpha: float
               ) -> dict[str, torch.Tensor]:
    """The state dict at ``alpha`` on the line from ``a`` (0) to ``b`` (1): every floating
    tensor by ``torch.lerp``, which gives ``a`` and ``b`` exactly at the ends; any other
    tensor (a counter, an index) must be equal in both and is kept."""
    if a.keys() != b.keys():
        raise ValueError(f"the two models differ in their tensors: "
                         f"{sorted(set(a) ^ set(b))[:5]}")
    out = {}
    for name, x in a.items():
        y = b[name]
        if x.shape != y.shape:
            raise ValueError(f"{name}: shapes {tuple(x.shape)} and {tuple(y.shape)} differ")
        if x.is_floating_point():
            out[name] = torch.lerp(x, y.to(x.dtype), float(alpha))
        elif torch.equal(x, y):
            out[name] = x
        else:
            raise ValueError(f"{name}: a non-floating tensor differs between the two models")
    return out


def path_values(model: torch.nn.Module, a: Mapping[str, torch.Tensor],
                b: Mapping[str, torch.Tensor], alphas: Sequence[float],
                measure: Callable[[torch.nn.Module], Mapping[str, float]]
                ) -> list[dict[str, float]]:
    """``measure`` of ``model`` holding the weights at each α (in eval mode), one dict per α
    with the α itself under ``alpha``; the model is left holding the last α's weights."""
    rows = []
    for alpha in alphas:
        model.load_state_dict(lerp_state(a, b, alpha))
        model.eval()
        rows.append({"alpha": float(alpha), **{k: float(v) for k, v in measure(model).items()}})
    return rows
