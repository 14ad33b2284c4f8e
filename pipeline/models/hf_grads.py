"""Per-token gradients of a Hugging Face causal LM: d nll_t / d h_t at every position t and
every hidden state, in one backward pass per batch.

With causal attention, a state at t reaches the loss at t only through the states above it at
t, so each position may read the other positions' keys and values as constants (equal values,
only the within-t path is live) and the summed loss is differentiated once. That attention is
registered in transformers' ``AttentionInterface`` and selected for the gradient pass, so every
model whose attention goes through the registry (GPT-NeoX/Pythia, GPT-2, Llama, OLMo, Qwen, ...)
gets it without code of its own; any other falls back to one backward pass per position.
"""

from __future__ import annotations

import contextlib
import logging
import weakref

import torch

log = logging.getLogger(__name__)
NAME = "pipeline_vertical"  # the registry key of the vertical attention
_CHECKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> one_pass_ok


class Unsupported(RuntimeError):
    """The attention call uses a feature the vertical attention does not implement."""


def vertical_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                       **kwargs):
    """Eager attention ([B, H, T, D] heads, rotary applied) in which each position reads the
    other positions' keys and values detached: equal values, only the within-t path is live.
    Key and value heads are repeated for grouped-query attention; the softmax is taken in
    float32 at least."""
    if kwargs.get("s_aux") is not None:
        raise Unsupported("attention sinks (s_aux)")
    if key.shape[-2] != query.shape[-2]:
        raise Unsupported(f"{key.shape[-2]} keys for {query.shape[-2]} queries (a cache)")
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    kd, vd = key.detach(), value.detach()
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = (query @ kd.transpose(-1, -2)
              + torch.diag_embed((query * (key - kd)).sum(-1))) * scale
    if kwargs.get("softcap") is not None:
        scores = torch.tanh(scores / kwargs["softcap"]) * kwargs["softcap"]
    wide = scores if scores.dtype == torch.float64 else scores.float()
    t = scores.shape[-1]
    if attention_mask is None:  # no mask made: causal
        attention_mask = torch.ones(t, t, dtype=torch.bool, device=scores.device).tril()
    if attention_mask.dtype == torch.bool:
        wide = wide.masked_fill(~attention_mask, torch.finfo(wide.dtype).min)
    else:
        wide = wide + attention_mask[..., :t]
    p = torch.softmax(wide, -1).to(query.dtype)
    p = torch.nn.functional.dropout(p, p=dropout, training=module.training)
    out = p @ vd + p.diagonal(dim1=-2, dim2=-1).unsqueeze(-1) * (value - vd)
    return out.transpose(1, 2).contiguous(), None


@contextlib.contextmanager
def vertical(model, attend=vertical_attention):
    """``model`` runs with the vertical attention (``attend``, registered as ``NAME`` with
    eager attention's additive mask) inside the block, with its own after."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(NAME, attend)
    AttentionMaskInterface.register(NAME, eager_mask)
    before = model.config._attn_implementation
    model.set_attn_implementation(NAME)
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def one_pass_ok(model) -> bool:
    """Whether the vertical attention gives ``model`` its per-token gradients: its class lets
    the attention be set, and a forward pass calls it once per layer (a model with other
    position-mixing layers, or attention outside the registry, calls it fewer times). Logs why
    not, once per model (its checkpoints are loaded into the same object)."""
    if model not in _CHECKED:
        _CHECKED[model] = _one_pass_ok(model)
    return _CHECKED[model]


def _one_pass_ok(model) -> bool:
    name = type(model).__name__
    can_set = getattr(model, "_can_set_attn_implementation", None)
    if can_set is not None and not can_set():
        log.warning("%s: its attention does not go through transformers' AttentionInterface; "
                    "gradients take one backward pass per position", name)
        return False
    calls = []

    def counted(module, *args, **kwargs):
        calls.append(module)
        return vertical_attention(module, *args, **kwargs)

    try:
        with vertical(model, counted), torch.no_grad():
            device = next(model.parameters()).device
            out = model(input_ids=torch.zeros((1, 2), dtype=torch.long, device=device),
                        output_hidden_states=True)
    except Unsupported as err:
        log.warning("%s: the one-pass gradient attention does not support %s; gradients take "
                    "one backward pass per position", name, err)
        return False
    layers = len(out.hidden_states) - 1
    if len(calls) != layers:
        log.warning("%s: %d of its %d layers' attention go through transformers' "
                    "AttentionInterface (other layers may mix positions); gradients take one "
                    "backward pass per position", name, len(calls), layers)
        return False
    return True


def own_position_grads(nll, states: tuple, valid) -> list:
    """[d nll[:, t] / d state[:, t] for every position t] per state tensor: one backward pass
    per position (the fallback; a vmapped one, ``is_grads_batched``, took longer on CPU: it
    carries a positions-sized batch through every layer)."""
    out = [torch.zeros_like(s) for s in states]
    for t in range(nll.shape[1]):
        if not bool(valid[:, t].any()):
            continue  # padding: no loss there
        got = torch.autograd.grad(nll[:, t].sum(), states, retain_graph=True,
                                  allow_unused=True)
        for layer, d in enumerate(got):
            if d is not None:
                out[layer][:, t] = d[:, t]
    return out


def one_pass_grads(nll, states: tuple) -> list:
    """[d nll[:, t] / d state[:, t]] per state tensor from one backward pass of the summed
    loss: right only for a forward pass run with the vertical attention (``attention``)."""
    got = torch.autograd.grad(nll.sum(), states, allow_unused=True)
    return [torch.zeros_like(s) if d is None else d for s, d in zip(states, got, strict=True)]
