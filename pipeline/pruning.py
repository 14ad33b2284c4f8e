"""One-shot weight pruning of a model copy (no retraining): global magnitude pruning and its
random control at the same per-parameter sparsity, and the sparsity a model has.

Counted parameters: every parameter with ndim >= 2 (Linear and embedding weights, LSTM
weight_ih/weight_hh, convolution kernels), each once however many modules share it (tied
embeddings); biases and LayerNorm gains (1-D) are pruned only where named (``ticket_names``).
Iterative magnitude pruning (lottery tickets) keeps its masks as {name: 0/1 tensor}:
``imp_masks`` makes the next round's, ``random_like`` its control. Parameters are named as
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
        if param.ndim >= 2 or names is not None
    ]
    if names is None:
        return found
    wanted = list(names)
    known = {name for name, _, _ in found}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ValueError(
            f"not parameters of this model: {unknown} (e.g. {sorted(known)[:5]})"
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


TICKET_PARTS = ("weights", "embeddings", "biases")


def ticket_names(model: nn.Module, include: Iterable[str]) -> list[str]:
    """The parameters a lottery ticket prunes, in model order: ``weights`` (every counted
    parameter but the embeddings'), ``embeddings`` (those of ``nn.Embedding`` modules, tied
    ones once) and ``biases`` (1-D parameters named ``bias``); never a LayerNorm gain."""
    include = set(include)
    unknown = include - set(TICKET_PARTS)
    if unknown:
        raise ValueError(f"ticket parts {sorted(unknown)}; known: {list(TICKET_PARTS)}")
    embedding = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    names = []
    for name, param in model.named_parameters():
        if param.ndim >= 2:
            part = "embeddings" if id(param) in embedding else "weights"
        elif name.endswith("bias"):
            part = "biases"
        else:
            continue
        if part in include:
            names.append(name)
    return names


def imp_masks(model: nn.Module, masks: dict[str, torch.Tensor], rate: float
              ) -> dict[str, torch.Tensor]:
    """The next round of iterative magnitude pruning: of the weights each mask keeps (the
    model holds the last round's trained weights), the round(rate·kept) of smallest |w|
    over all the masks' parameters together are removed (``prune.global_unstructured`` with
    ``prune.L1Unstructured``, which prunes only among the entries a previous mask kept).
    Ties at the threshold: ``torch.topk``'s choice (the count is exact). Returns new masks
    (float 0/1 on the CPU) for the same names; ``model`` is not changed."""
    copy_ = copy.deepcopy(model)
    params = prunable(copy_, list(masks))
    kept = int(sum(int(m.sum()) for m in masks.values()))
    targets = [(module, attr) for _, module, attr in params]
    with torch.no_grad():
        for (name, module, attr) in params:
            weight = getattr(module, attr)
            prune.custom_from_mask(module, attr, masks[name].to(weight.device, weight.dtype))
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured,
                                  amount=n_to_prune(rate, kept))
    return {name: getattr(module, attr + "_mask").detach().cpu().float()
            for name, module, attr in params}


def random_like(masks: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Random masks with each tensor's count of zeros in ``masks`` (the control of a ticket:
    the same sparsity per tensor), positions from ``torch.randperm`` with one CPU Generator
    seeded with ``seed``, tensors in the given order."""
    gen = torch.Generator().manual_seed(int(seed))
    out = {}
    for name, mask in masks.items():
        flat = torch.ones(mask.numel())
        flat[torch.randperm(mask.numel(), generator=gen)[:int((mask == 0).sum())]] = 0
        out[name] = flat.view_as(mask)
    return out


def mask_sparsity(masks: dict[str, torch.Tensor]) -> tuple[dict[str, float], float]:
    """Share of zeros in each mask, and over all of them together."""
    per = {name: float((m == 0).sum()) / m.numel() for name, m in masks.items()}
    total = sum(m.numel() for m in masks.values())
    zeros = sum(int((m == 0).sum()) for m in masks.values())
    return per, (zeros / total if total else 0.0)
