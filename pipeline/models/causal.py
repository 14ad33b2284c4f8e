"""Per-token gradients of a fairseq causal Transformer decoder in one backward pass.

With causal self-attention, a state at position t reaches the loss at t only through the states
above it at t (later positions cannot reach back), so the decoder is recomputed "vertically":
each position reads the other positions' keys and values as constants (equal values, only the
within-t path is live), and the summed per-token loss is differentiated once. Works for
decoders with cross-attention (NMT; the encoder output is held constant) and without (LM).
"""

from __future__ import annotations

import torch

from pipeline.models.words import target_nll


def wide(x: torch.Tensor) -> torch.Tensor:
    """``x`` in at least float32 (half precision is widened, float64 kept)."""
    return x if x.dtype == torch.float64 else x.float()


def _vertical_self_attn(attn, x: torch.Tensor) -> torch.Tensor:
    """fairseq's causal self-attention over x [T, B, C] in which position t reads the keys and
    values of the other positions as constants: equal values, only the within-t path is live."""
    T, B, C = x.shape
    h, d = attn.num_heads, attn.head_dim

    def heads(z):
        return z.reshape(T, B * h, d).transpose(0, 1)  # [B*h, T, d]

    q = heads(attn.q_proj(x) * attn.scaling)
    k, v = heads(attn.k_proj(x)), heads(attn.v_proj(x))
    kd, vd = k.detach(), v.detach()
    scores = q @ kd.transpose(1, 2) + torch.diag_embed((q * (k - kd)).sum(-1))
    future = torch.triu(torch.full((T, T), float("-inf"), device=x.device), 1)
    p = torch.softmax(wide(scores) + future, -1).to(x)
    out = p @ vd + p.diagonal(dim1=1, dim2=2).unsqueeze(-1) * (v - vd)
    return attn.out_proj(out.transpose(0, 1).reshape(T, B, C))


def _vertical_layer(layer, x: torch.Tensor, enc_out: torch.Tensor | None,
                    enc_pad) -> torch.Tensor:
    """One fairseq TransformerDecoderLayer (eval mode) with the vertical self-attention."""
    assert layer.c_attn is None and layer.attn_ln is None and layer.ffn_layernorm is None
    assert layer.w_resid is None and not layer.cross_self_attention

    def block(x, norm, f):
        return x + f(norm(x)) if layer.normalize_before else norm(x + f(x))

    def cross(y):
        return layer.encoder_attn(query=y, key=enc_out, value=enc_out, key_padding_mask=enc_pad,
                                  static_kv=True, need_weights=False)[0]

    x = block(x, layer.self_attn_layer_norm, lambda y: _vertical_self_attn(layer.self_attn, y))
    if layer.encoder_attn is not None:
        x = block(x, layer.encoder_attn_layer_norm, cross)
    return block(x, layer.final_layer_norm,
                 lambda y: layer.fc2(layer.activation_fn(layer.fc1(y))))


def decoder_token_grads(model, embedded: torch.Tensor, target: torch.Tensor,
                        keep: torch.Tensor, enc: dict | None = None) -> list[torch.Tensor]:
    """d(loss of token t)/d(decoder state at t) for the embedding output and every layer
    ([T, B, C] each): ``embedded`` is the decoder's first inner state, ``keep`` masks the
    positions whose losses count, ``enc`` the encoder output (None for an LM)."""
    dec = model.decoder
    enc_out = enc_pad = None
    if enc is not None:
        enc_out = enc["encoder_out"][0].detach()
        enc_pad = enc["encoder_padding_mask"][0] if enc["encoder_padding_mask"] else None
    states = [embedded.detach().requires_grad_()]
    for layer in dec.layers:
        states.append(_vertical_layer(layer, states[-1], enc_out, enc_pad))
    x = states[-1] if dec.layer_norm is None else dec.layer_norm(states[-1])
    x = x.transpose(0, 1)
    if dec.project_out_dim is not None:
        x = dec.project_out_dim(x)
    nll = target_nll(model, x, target, pad=-1) * keep
    return list(torch.autograd.grad(nll.sum(), states))
