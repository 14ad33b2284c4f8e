"""Transformer language models (fairseq `transformer_lm`: pre-norm causal decoder) on the same
word stream, vocabulary and token windows as the LSTM LMs, so the two families are compared
on the same data.

Layers: the decoder's embedding output (token embedding × scale + sinusoidal positions) and
every layer's output (pre-norm, `normalize_before`: the residual stream, with the final
LayerNorm after the last layer; post-norm: each layer's normalised output).
Per-token gradients come from the causal-decoder recomputation (pipeline.models.causal).
A layer is projected (``project``) by a hook on the module whose output is its recorded state:
the embedding's dropout (identity in eval mode; its output is the first inner state) or the
layer. The recomputation calls no layer's forward, so gradients read within a projection
block are not the projected model's: read activations there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from analysis.fields import setting
from pipeline.models import (
    Spec,
    adam_betas,
    causal,
    register,
    replace_output,
    scheduler_args,
    words,
)


def stack_points(stack, embed: str, prefix: str) -> dict:
    """The module whose output is each recorded state of a fairseq Transformer encoder or
    decoder: the embedding's dropout module (the last step of its embedding, called once per
    pass; an encoder's quant-noise, which follows it, must be absent), then each layer."""
    if getattr(stack, "quant_noise", None) is not None and hasattr(stack, "forward_embedding"):
        raise NotImplementedError(f"{type(stack).__name__} applies quant-noise after its "
                                  "embedding dropout: no module outputs its embedding state")
    return {embed: stack.dropout_module,
            **{f"{prefix}{i}": layer for i, layer in enumerate(stack.layers, 1)}}


def transformer_lm_states(model, inp: torch.Tensor, target: torch.Tensor, pad: int,
                          grads: bool) -> tuple[dict, dict]:
    """Activations (and per-token own-loss gradients) of every layer, [B, T, dim] each."""
    with torch.no_grad():
        _, extra = model.decoder(inp, features_only=True, return_all_hiddens=True)
    states = extra["inner_states"]  # [T, B, C] each: embedding output, then every layer
    names = ["embed"] + [f"layer_{i}" for i in range(1, len(states))]
    acts = {n: s.transpose(0, 1) for n, s in zip(names, states, strict=True)}
    if not grads:
        return acts, {}
    keep = (target != pad).to(states[0].dtype)
    g = causal.decoder_token_grads(model, states[0], target, keep)
    return acts, {n: x.transpose(0, 1) for n, x in zip(names, g, strict=True)}


@dataclass
class TransformerLMConfig(words.WordStreamConfig):
    """conf/model/transformer_lm_*.yaml."""

    ffn_dim: int = setting(ge=1)
    heads: int = setting(ge=1)
    normalize_before: bool = setting(help="pre-norm, as GPT-style LMs")
    share_embeddings: bool = setting(help="input and output embeddings tied")
    adam_betas: list[float] = setting(ge=0, lt=1, help="Adam's beta1 and beta2")


@register("transformer_lm")
class TransformerLanguageModel(words.WordStreamKind):
    Config = TransformerLMConfig
    family = "transformer"
    layer_states = staticmethod(transformer_lm_states)

    def fairseq_args(self, spec: Spec, data: Path) -> list:
        args = words.task_args(spec, data) + [
            "--arch", "transformer_lm", "--decoder-layers", spec["layers"],
            # input/output dims default to 512 whatever the embedding dim (fairseq's config
            # defaults win over its architecture function): set them, or it projects to 512
            "--decoder-embed-dim", spec["embed_dim"], "--decoder-input-dim", spec["embed_dim"],
            "--decoder-output-dim", spec["embed_dim"], "--decoder-ffn-embed-dim",
            spec["ffn_dim"], "--decoder-attention-heads", spec["heads"],
            "--dropout", spec["dropout"], "--optimizer", "adam", "--adam-betas", adam_betas(spec),
            "--lr", spec["lr"], *scheduler_args(spec), "--clip-norm", spec["clip_norm"]]
        if spec.get("share_embeddings"):
            args.append("--share-decoder-input-output-embed")
        if spec.get("normalize_before"):  # pre-norm (fairseq's arch default does not apply it)
            args.append("--decoder-normalize-before")
        return args + self.output_args(spec)

    def parameters(self, spec: Spec, data: Path) -> int:
        vocab, out = words.vocab_sizes(spec, data)
        d, f, n = spec["embed_dim"], spec["ffn_dim"], spec["layers"]
        layer = 4 * (d * d + d) + 2 * d * f + f + d + 4 * d
        output = 0 if spec.get("share_embeddings") else d * out
        return vocab * d + n * layer + 2 * d + output

    def layers(self, spec: Spec) -> list[tuple[str, str, int]]:
        d = spec["embed_dim"]
        return [("embed", "lm", d)] + [(f"layer_{i}", "lm", d)
                                       for i in range(1, spec["layers"] + 1)]

    def project(self, model, spec, layer, fn):
        return replace_output(stack_points(model.decoder, "embed", "layer_"), layer, fn)
