"""Transformer NMT en→de (fairseq `transformer`, shared embeddings) on the joint-BPE Multi30k.

Layers: the encoder and decoder embedding outputs and every layer, with the decoder
teacher-forced on the reference. Decoder gradients are each target token's loss at its own
position (pipeline.models.causal); encoder gradients are of the sentence's loss.
A layer is projected (``project``) by a hook on the module whose output is its recorded state:
each side's embedding dropout (not the embedding table, which the two sides share) or the
layer; the decoder's hooks act per step in incremental decoding too (greedy BLEU). Decoder
gradients within a projection block are not the projected model's (the recomputation calls no
layer's forward): read activations there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analysis.fields import REQUIRED, setting
from pipeline import evaluate, translation
from pipeline.models import (
    LRSchedule,
    ModelKind,
    Spec,
    adam_betas,
    causal,
    dict_size,
    register,
    replace_output,
    scheduler_args,
)
from pipeline.models.transformer_lm import stack_points


def nmt_states(model, src: torch.Tensor, prev: torch.Tensor, target: torch.Tensor, pad: int,
               grads: bool, keep: torch.Tensor):
    """Encoder and decoder states (all layers, [B, T, C]) and gradients: decoder states get
    d(loss of token t)/d(state at t), encoder states d(sentence loss)/d(state); `keep` masks
    the decoder positions whose losses count."""
    src_len = (src != pad).sum(1)
    with torch.set_grad_enabled(grads):
        enc = model.encoder(src, src_lengths=src_len, return_all_hiddens=True)
        enc_states = enc["encoder_states"]
        x, extra = model.decoder(prev, encoder_out=enc, features_only=True,
                                 return_all_hiddens=True)
        dec_states = extra["inner_states"]
    names_enc = ["enc_embed"] + [f"enc_{i}" for i in range(1, len(enc_states))]
    names_dec = ["dec_embed"] + [f"dec_{i}" for i in range(1, len(dec_states))]
    acts = {n: s.transpose(0, 1).detach() for n, s in zip(names_enc + names_dec,
                                                          enc_states + dec_states, strict=True)}
    if not grads:
        return acts, {}
    lprobs = model.get_normalized_probs((model.decoder.output_layer(x), None), log_probs=True)
    nll = (-lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)) * keep
    enc_grads = torch.autograd.grad(nll.sum(), enc_states)
    dec_grads = causal.decoder_token_grads(model, dec_states[0], target, keep, enc)
    grads_out = {n: g.transpose(0, 1) for n, g in zip(names_enc + names_dec,
                                                      list(enc_grads) + dec_grads, strict=True)}
    return acts, grads_out


def nmt_batches(src_sents, tgt_sents, dictionary, batch_size: int, order=None):
    """Right-padded teacher-forcing batches, in `order` (default: as given); yields the
    sentence indices of each batch with its tensors."""
    pad, eos = dictionary.pad(), dictionary.eos()
    order = list(range(len(src_sents))) if order is None else list(order)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        s_ids = [[dictionary.index(t) for t in src_sents[i].token] + [eos] for i in idx]
        t_ids = [[dictionary.index(t) for t in tgt_sents[i].token] + [eos] for i in idx]
        bsz = len(s_ids)
        src = torch.full((bsz, max(map(len, s_ids))), pad, dtype=torch.long)
        width = max(map(len, t_ids))
        prev = torch.full((bsz, width), pad, dtype=torch.long)
        target = torch.full((bsz, width), pad, dtype=torch.long)
        keep = torch.zeros((bsz, width))
        for b, (s, t) in enumerate(zip(s_ids, t_ids, strict=True)):
            src[b, : len(s)] = torch.tensor(s)
            target[b, : len(t)] = torch.tensor(t)
            prev[b, : len(t)] = torch.tensor([eos] + t[:-1])
            keep[b, 1: len(t)] = 1  # positions reading y1..ym
        yield idx, src, prev, target, keep, [len(s) - 1 for s in s_ids], [len(t) - 1
                                                                           for t in t_ids]


def side_sentences(rows: pd.DataFrame, side: str) -> list[pd.DataFrame]:
    part = rows[rows.side == side]
    return [g for _, g in part.groupby("sent_index", sort=True)]


def nmt_quality(model, task, data: Path, device: str, limit: int | None,
                decoding: Mapping | None) -> dict[str, float]:
    """A loaded translation model's teacher-forced loss on the validation pairs (bits per
    target piece, </s> included: fairseq's valid nll_loss, without label smoothing) and, given
    ``decoding`` (beam, max_len_a, max_len_b, batch_size: the translate stage's), the BLEU of
    its translations of test2016 (sacrebleu); ``limit``: the first N pairs of each (file
    order)."""
    quality = {"valid_loss": evaluate.token_metrics(model, task, "valid", device,
                                                    limit)["loss_bits"]}
    if decoding is not None:
        pairs = translation.load_pairs(data, "test2016", limit)
        hyps = translation.translate(model, task.target_dictionary, pairs, **decoding)
        quality["bleu"] = translation.bleu([translation.detokenize(h) for h in hyps], pairs)
    return quality


@dataclass
class TransformerNMTConfig(LRSchedule):
    """conf/model/transformer_nmt_*.yaml."""

    kind: str = REQUIRED
    layers: int = setting(ge=1)           # encoder and decoder each
    embed_dim: int = setting(ge=1)
    ffn_dim: int = setting(ge=1)
    heads: int = setting(ge=1)
    dropout: float = setting(ge=0, lt=1)
    lr: float = setting(gt=0)
    adam_betas: list[float] = setting(ge=0, lt=1, help="Adam's beta1 and beta2")
    clip_norm: float = setting(ge=0)
    label_smoothing: float = setting(ge=0, lt=1)
    max_tokens: int = setting(ge=1)
    max_update: int = setting(ge=1)
    # added to `seed` for this model's fairseq seed (initialisation, data order): taggers use
    # their own, so they do not start from their LM's weights; 0 = the LM's (the control)
    seed_offset: int = setting(ge=0)
    beam: int = setting(ge=1)


@register("transformer_nmt")
class TransformerNMT(ModelKind):
    Config = TransformerNMTConfig
    family = "transformer"
    rising = "test_bleu"
    sides = ("source", "target")

    def fairseq_args(self, spec: Spec, data: Path) -> list:
        d = spec["embed_dim"]
        return [
            str(Path(data) / "nmt" / "bin"), "--task", "translation", "--source-lang", "en",
            "--target-lang", "de", "--arch", "transformer", "--share-all-embeddings",
            "--encoder-layers", spec["layers"], "--decoder-layers", spec["layers"],
            "--encoder-embed-dim", d, "--decoder-embed-dim", d,
            "--encoder-ffn-embed-dim", spec["ffn_dim"], "--decoder-ffn-embed-dim",
            spec["ffn_dim"], "--encoder-attention-heads", spec["heads"],
            "--decoder-attention-heads", spec["heads"], "--dropout", spec["dropout"],
            "--optimizer", "adam", "--adam-betas", adam_betas(spec), "--lr", spec["lr"],
            *scheduler_args(spec), "--clip-norm", spec["clip_norm"],
            "--criterion", "label_smoothed_cross_entropy",
            "--label-smoothing", spec["label_smoothing"], "--max-tokens", spec["max_tokens"],
        ]

    def parameters(self, spec: Spec, data: Path) -> int:
        d, f, n = spec["embed_dim"], spec["ffn_dim"], spec["layers"]
        vocab = dict_size(Path(data) / "nmt" / "bin" / "dict.en.txt")
        ffn = 2 * d * f + f + d
        return vocab * d + n * (4 * (d * d + d) + ffn + 4 * d) + n * (8 * (d * d + d) + ffn + 6 * d)

    def tokens_per_update(self, spec: Spec) -> int:
        return int(spec["max_tokens"])

    def layers(self, spec: Spec) -> list[tuple[str, str, int]]:
        d, n = spec["embed_dim"], spec["layers"]
        return ([("enc_embed", "source", d)] + [(f"enc_{i}", "source", d) for i in range(1, n + 1)]
                + [("dec_embed", "target", d)]
                + [(f"dec_{i}", "target", d) for i in range(1, n + 1)])

    def project(self, model, spec, layer, fn):
        points = {**stack_points(model.encoder, "enc_embed", "enc_"),
                  **stack_points(model.decoder, "dec_embed", "dec_")}
        return replace_output(points, layer, fn)

    def load_overrides(self, spec: Spec, data: Path) -> dict:
        return {"data": str(Path(data) / "nmt" / "bin")}

    def states(self, model, task, spec, rows, label_column, grads, batch_size):
        src_s, tgt_s = side_sentences(rows, "source"), side_sentences(rows, "target")
        order = np.argsort([len(t) for t in tgt_s], kind="stable")  # by length: less padding
        dictionary = task.source_dictionary
        device = next(model.parameters()).device
        per_sent: dict[str, dict] = {"act": {}, "grad": {}}
        for idx, src, prev, target, keep, src_lens, tgt_lens in nmt_batches(
                src_s, tgt_s, dictionary, batch_size, order):
            src, prev, target, keep = (x.to(device) for x in (src, prev, target, keep))
            a, g = nmt_states(model, src, prev, target, dictionary.pad(), grads, keep)
            for what, arrays in (("act", a), ("grad", g)):
                for name, batch in arrays.items():
                    lens, offset = (src_lens, 0) if name.startswith("enc") else (tgt_lens, 1)
                    batch = batch.detach().float().cpu().numpy()
                    for b, (i, n) in enumerate(zip(idx, lens, strict=True)):
                        per_sent[what].setdefault(name, {})[i] = batch[b, offset: offset + n]
        out = ({}, {})
        for store, what in zip(out, ("act", "grad"), strict=True):
            for name, by_sentence in per_sent[what].items():
                store[name] = np.concatenate([by_sentence[i] for i in range(len(src_s))])
        return out

    def forward(self, model, task, rows, batch_size):
        d = task.source_dictionary
        device = next(model.parameters()).device
        with torch.no_grad():
            for _, src, prev, *_ in nmt_batches(side_sentences(rows, "source"),
                                                side_sentences(rows, "target"), d, batch_size):
                src, prev = src.to(device), prev.to(device)
                model(src, (src != d.pad()).sum(1), prev)

    def evaluate(self, spec: Spec, checkpoint: Path, data: Path, device: str) -> dict:
        return {"test_bleu": round(evaluate.bleu(checkpoint, data, spec["beam"], device), 2)}

    def quality(self, model, task, spec, data, device, limit, decoding=None):
        return nmt_quality(model, task, data, device, limit, decoding)

    def quality_keys(self, spec):
        return {"valid_loss": False, "bleu": True}  # bleu: with decoding

