"""LSTM language models (fairseq `lstm_lm`) and LSTM taggers (`lstm_tagger`: the same
architecture with a tag-vocabulary output, predicting the tag of the next word).

Layers: the embedding output and each LSTM layer's hidden state, recorded with hooks on the
cells (fairseq's decoder returns only the top layer). The gradient of token t's loss with
respect to a state at t follows only paths within time step t (the recurrence carries state
forward in time and the loss at t cannot depend on later steps), so every layer's gradients
come from one backward pass through a *vertical* recomputation of the cells with the previous
step's states held constant.

A layer is projected (``project``) by a hook on the module whose output it is: the embedding,
or a cell, whose hidden output h is replaced (its memory c kept), the h that both the layer
above and the cell's next time step read.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from analysis.fields import setting
from pipeline.models import Spec, register, replace_output, scheduler_args, words


class LSTMRecorder:
    """Forward hooks on the decoder's cells: (h, c) of every layer at every time step."""

    def __init__(self, decoder):
        self.h = [[] for _ in decoder.layers]
        self.c = [[] for _ in decoder.layers]
        self.handles = [layer.register_forward_hook(functools.partial(self._cell, i))
                        for i, layer in enumerate(decoder.layers)]

    def _cell(self, i, module, inputs, output):
        h, c = output
        self.h[i].append(h)
        self.c[i].append(c)

    def remove(self):
        for handle in self.handles:
            handle.remove()

    def stacked(self):
        """([B, T, H] hidden states per layer, [B, T, H] cell states per layer)."""
        return ([torch.stack(h, 1) for h in self.h], [torch.stack(c, 1) for c in self.c])


def lstm_points(decoder) -> dict:
    """The module whose output is each layer's state: the embedding, then each cell (its h)."""
    return {"embed": decoder.embed_tokens,
            **{f"lstm_{i}": cell for i, cell in enumerate(decoder.layers, 1)}}


def lstm_states(model, inp: torch.Tensor, target: torch.Tensor | None, pad: int,
                grads: bool) -> tuple[dict, dict]:
    """Activations (and per-token own-loss gradients) of every layer, [B, T, dim] each."""
    dec = model.decoder
    rec = LSTMRecorder(dec)
    try:
        with torch.no_grad():
            dec.extract_features(inp)
    finally:
        rec.remove()
    hidden, cells = rec.stacked()
    with torch.no_grad():
        emb = dec.embed_tokens(inp)
    names = ["embed"] + [f"lstm_{i + 1}" for i in range(len(hidden))]
    acts = dict(zip(names, [emb, *hidden], strict=True))
    if not grads:
        return acts, {}
    # vertical recomputation: each step's cells from constant previous states
    x = emb.detach().requires_grad_()
    outs = [x]
    bsz, steps = inp.shape
    for i, cell in enumerate(dec.layers):
        zero = hidden[i].new_zeros(bsz, 1, hidden[i].shape[-1])
        prev_h = torch.cat([zero, hidden[i][:, :-1]], 1).reshape(bsz * steps, -1)
        prev_c = torch.cat([zero, cells[i][:, :-1]], 1).reshape(bsz * steps, -1)
        h, _ = cell(x.reshape(bsz * steps, -1), (prev_h, prev_c))
        x = h.view(bsz, steps, -1)
        outs.append(x)
    top = dec.additional_fc(x) if hasattr(dec, "additional_fc") else x
    nll = words.target_nll(model, top, target, pad)
    gradients = torch.autograd.grad(nll.sum(), outs)
    return acts, dict(zip(names, gradients, strict=True))


@dataclass
class LSTMConfig(words.WordStreamConfig):
    """conf/model/lstm_lm_*.yaml (and the taggers that inherit one)."""

    hidden: int = setting(ge=1)
    optimizer: str = setting(choices=("sgd", "adam"))


@dataclass
class LSTMTaggerConfig(LSTMConfig):
    tags: str = setting(help="the tag set it predicts (its `words` stream's labels)")


@register("lstm_lm")
class LSTMLanguageModel(words.WordStreamKind):
    """Saphra & Lopez's LSTM LM on the word stream (fairseq `lstm_lm`)."""

    Config = LSTMConfig
    family = "lstm"
    arch = "lstm_lm"
    layer_states = staticmethod(lstm_states)

    def fairseq_args(self, spec: Spec, data: Path) -> list:
        return words.task_args(spec, data) + [
            "--arch", self.arch, "--decoder-layers", spec["layers"],
            "--decoder-embed-dim", spec["embed_dim"], "--decoder-hidden-size", spec["hidden"],
            "--decoder-out-embed-dim", spec["hidden"], "--dropout", spec["dropout"],
            "--optimizer", spec["optimizer"], "--lr", spec["lr"], "--clip-norm",
            spec["clip_norm"], *scheduler_args(spec)] + self.output_args(spec)

    def parameters(self, spec: Spec, data: Path) -> int:
        vocab, out = words.vocab_sizes(spec, data)
        e, h = spec["embed_dim"], spec["hidden"]
        lstm = sum(4 * h * ((e if i == 0 else h) + h) + 8 * h for i in range(spec["layers"]))
        return vocab * e + lstm + h * out + out

    def layers(self, spec: Spec) -> list[tuple[str, str, int]]:
        return [("embed", "lm", spec["embed_dim"])] + [
            (f"lstm_{i + 1}", "lm", spec["hidden"]) for i in range(spec["layers"])]

    def project(self, model, spec, layer, fn):
        return replace_output(lstm_points(model.decoder), layer, fn)


@register("lstm_tagger")
class LSTMTagger(LSTMLanguageModel):
    """The LM's architecture predicting the next word's tag (spec `tags`); a reference."""

    Config = LSTMTaggerConfig
    arch = "lstm_tagger"
    reference = True
