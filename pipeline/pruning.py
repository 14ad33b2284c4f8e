"""One-shot weight pruning of a model copy (no retraining): global magnitude pruning and its
random control at the same per-parameter sparsity, and the sparsity a model has.

Counted parameters: every parameter with ndim >= 2 (Linear and embedding weights, LSTM
weight_ih/weight_hh, convolution kernels), each once however many modules share it (tied
embeddings); biases and LayerNorm gains (1-D) are never pruned. Parameters are named as
``model.named_parameters()`` names them (a shared one by its first name). The model passed
in is never changed: each function prunes a deep copy and returns it, its pruned weights
plain tensors with zeros (``prune.remove`` applied), so it runs and saves like the original.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.utils import prune


def prunable(
    model: nn.Module, names: Iterable[str] | None = None
) -> list[tuple[str, nn.Module, str]]:
    """(name, owning module, attribute) of each counted parameter, in model order; ``names``
    restricts them to those names (each must be a counted parameter)."""
    owners: dict[int, tuple[nn.Module, str]] = {}
    for module in model.modules():
        for attr, param in module.named_parameters(recurse=False):
            owners.setdefault(id(param), (module, attr))
    found = [
        (name, *owners[id(param)])
        for name, param in model.named_parameters()
        if param.ndim >= 2
    ]
    if names is None:
        return found
    wanted = list(names)
    known = {name for name, _, _ in found}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ValueError(
            f"not prunable parameters of this model: {unknown} (counted: every parameter with "
            f"ndim >= 2, e.g. {sorted(known)[:5]})"
        )
    return [entry for entry in found if entry[0] in set(wanted)]


def _keep_order(modules: Iterable[nn.Module]) -> list[tuple[nn.Module, list[str]]]:
    """Each module's parameter names in order, for :func:`_restore_order`."""
    unique = {id(m): m for m in modules}
    return [(m, list(m._parameters)) for m in unique.values()]


def _restore_order(orders: list[tuple[nn.Module, list[str]]]) -> None:
    """Parameters back in their original order: prune re-registers a pruned one last, which
    would reorder the copy's state dict."""
    for module, order in orders:
        for name in order:
            module._parameters[name] = module._parameters.pop(name)


def n_to_prune(sparsity: float, n: int) -> int:
    """round(s·n) by Python's round (exact halves to even: 0.5 of 5 weights prunes 2), as
    torch's own float ``amount`` does; passed to torch as an int so the count is explicit."""
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    return round(sparsity * n)


def global_magnitude_masks(
    model: nn.Module, sparsity: float, names: Iterable[str] | None = None
) -> nn.Module:
    """A copy of ``model`` with the round(s·n) counted weights of smallest |w| set to zero,
    chosen over all counted parameters together (``prune.global_unstructured`` with
    ``prune.L1Unstructured``; n = the counted weights). Ties at the threshold are resolved by
    ``torch.topk``'s choice (which of the equal weights is unspecified; the count is exact).
    Weights that are already zero count among the smallest. At s = 0 every weight is
    bit-identical to the original's (w · 1)."""
    pruned = copy.deepcopy(model)
    params = prunable(pruned, names)
    n = sum(getattr(module, attr).numel() for _, module, attr in params)
    amount = n_to_prune(sparsity, n)
    if not params:
        return pruned
    targets = [(module, attr) for _, module, attr in params]
    orders = _keep_order(module for module, _ in targets)
    with torch.no_grad():
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
        for module, attr in targets:
            prune.remove(module, attr)
    _restore_order(orders)
    return pruned


def random_masks(
    model: nn.Module, per_parameter_sparsity: dict[str, float], seed: int
) -> nn.Module:
    """A copy of ``model`` with round(s_p·n_p) weights of each named parameter p zeroed at
    random (the control for :func:`global_magnitude_masks`: pass its :func:`sparsity_of`).
    Positions come from ``torch.randperm`` with one CPU Generator seeded with ``seed``,
    parameters in model order, so the masks are the same for the same seed on any device."""
    pruned = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(int(seed))
    params = prunable(pruned, per_parameter_sparsity)
    orders = _keep_order(module for _, module, _ in params)
    with torch.no_grad():
        for name, module, attr in params:
            weight = getattr(module, attr)
            count = n_to_prune(per_parameter_sparsity[name], weight.numel())
            mask = torch.ones(weight.numel(), dtype=weight.dtype)
            mask[torch.randperm(weight.numel(), generator=gen)[:count]] = 0
            prune.custom_from_mask(module, attr, mask.view_as(weight).to(weight.device))
            prune.remove(module, attr)
    _restore_order(orders)
    return pruned


def sparsity_of(
    model: nn.Module, names: Iterable[str] | None = None
) -> tuple[dict[str, float], float]:
    """Share of exact zeros in each counted parameter, and over all of them together."""
    per: dict[str, float] = {}
    zeros = total = 0
    for name, module, attr in prunable(model, names):
        weight = getattr(module, attr)
        z = int((weight == 0).sum())
        per[name] = z / weight.numel()
        zeros, total = zeros + z, total + weight.numel()
    return per, (zeros / total if total else 0.0)
