"""What every model on the word streams shares (LSTM and Transformer LMs, LSTM taggers): the
binarised data they train on, their probe batches and their evaluation.

A language model reads `</s> w1..wn` and predicts `w1..wn </s>`; a tagger reads the same words
and predicts the tag of the next word (the tags of w1..wn, then `</s>`). Probe rows kept are
positions 1..n (the states after reading w1..wn).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analysis.fields import REQUIRED, setting
from pipeline import evaluate
from pipeline.models import LRSchedule, ModelKind, Spec, dict_size


def bins(data: Path) -> Path:
    return Path(data) / "lm" / "bin"


def task_args(spec: Spec, data: Path) -> list:
    """The data path and task flags: language modelling, or next-tag tagging (spec `tags`)."""
    b = bins(data)
    args: list = [str(b / spec["words"])]
    if spec.get("tags"):
        args += ["--task", "next_tag_tagging", "--tags-data", str(b / spec["tags"])]
    else:
        args += ["--task", "language_modeling"]
    return args + ["--sample-break-mode", "none", "--tokens-per-sample",
                   spec["tokens_per_sample"], "--batch-size", spec["batch_size"],
                   "--required-batch-size-multiple", 1]


def load_overrides(spec: Spec, data: Path) -> dict:
    """Point a checkpoint at this prepare stage's binarised streams."""
    b = bins(data)
    overrides = {"data": str(b / spec["words"])}
    if spec.get("tags"):
        overrides["tags_data"] = str(b / spec["tags"])
    return overrides


def vocab_sizes(spec: Spec, data: Path) -> tuple[int, int]:
    """(input vocabulary, output vocabulary) including fairseq's specials."""
    b = bins(data)
    words = dict_size(b / spec["words"] / "dict.txt")
    out = dict_size(b / spec["tags"] / "dict.txt") if spec.get("tags") else words
    return words, out


def label_column(spec: Spec, probe: Mapping) -> str | None:
    """A tagger's gold labels on a probe (from the probe manifest's `labels`), '' if absent."""
    if not spec.get("tags"):
        return None
    return probe.get("labels", {}).get(spec["tags"], "")


def batches(sents: list[pd.DataFrame], src_dict, tgt_dict, label_column: str | None,
            batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[int]]]:
    """Right-padded batches (input, target, sentence lengths): targets are the next words
    (``label_column`` None), the sentence's labels (a column name), or unused ('')."""
    pad, eos = src_dict.pad(), src_dict.eos()
    for start in range(0, len(sents), batch_size):
        chunk = sents[start:start + batch_size]
        ids = [[src_dict.index(t) for t in s.token] for s in chunk]
        if label_column is None:
            tgt = [i + [eos] for i in ids]
        elif label_column:
            tgt = [[tgt_dict.index(t) for t in s[label_column]] + [tgt_dict.eos()]
                   for s in chunk]
        else:
            tgt = [[tgt_dict.eos()] * (len(i) + 1) for i in ids]  # no gold labels: unused
        width = max(len(i) for i in ids) + 1
        inp = torch.full((len(chunk), width), pad, dtype=torch.long)
        target = torch.full((len(chunk), width), tgt_dict.pad(), dtype=torch.long)
        for b, (i, t) in enumerate(zip(ids, tgt, strict=True)):
            inp[b, : len(i) + 1] = torch.tensor([eos] + i)
            target[b, : len(t)] = torch.tensor(t)
        yield inp, target, [len(i) for i in ids]


def target_nll(model, features: torch.Tensor, target: torch.Tensor, pad: int) -> torch.Tensor:
    """-log p(target) per position, differentiable in ``features`` (the decoder output before
    its output layer; [B, T, C]); 0 at padding. An adaptive softmax is evaluated out of place
    (fairseq's get_log_prob writes into its result, which autograd refuses): head log-softmax
    for frequent words, plus the cluster's tail log-softmax for the others."""
    dec = model.decoder
    adaptive = getattr(dec, "adaptive_softmax", None)
    if adaptive is None:
        lprobs = model.get_normalized_probs((dec.output_layer(features), None), log_probs=True)
        nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        return nll.masked_fill(target == pad, 0)
    x = features.reshape(-1, features.shape[-1])
    t = target.reshape(-1)
    head = torch.log_softmax(adaptive.head(x), -1)
    cut = adaptive.cutoff
    head_target = t.clone()
    lp = torch.zeros_like(t, dtype=head.dtype)
    for i, tail in enumerate(adaptive.tail):
        inside = (t >= cut[i]) & (t < cut[i + 1])
        head_target = torch.where(inside, torch.full_like(t, cut[0] + i), head_target)
        in_tail = torch.log_softmax(tail(x), -1).gather(
            -1, (t - cut[i]).clamp(0, cut[i + 1] - cut[i] - 1).unsqueeze(-1)).squeeze(-1)
        lp = lp + torch.where(inside, in_tail, torch.zeros_like(in_tail))
    lp = lp + head.gather(-1, head_target.unsqueeze(-1)).squeeze(-1)
    return (-lp).reshape(target.shape).masked_fill(target == pad, 0)


def sentences(rows: pd.DataFrame) -> list[pd.DataFrame]:
    """The probe's sentences in order."""
    return [g for _, g in rows.groupby("sent_index", sort=True)]


def collect(store: dict[str, list], arrays: Mapping[str, torch.Tensor], lengths: list[int],
            offset: int) -> None:
    """Append the kept rows (positions offset..offset+len-1) of each sentence."""
    for name, batch in arrays.items():
        batch = batch.detach().float().cpu().numpy()
        store.setdefault(name, []).extend(batch[b, offset: offset + n]
                                          for b, n in enumerate(lengths))


def run_states(states_fn, model, task, rows: pd.DataFrame, label_column: str | None,
               grads: bool, batch_size: int) -> tuple[dict, dict]:
    """Every layer's activations (and gradients) over the probe rows, via ``states_fn(model,
    inp, target, pad, grads) -> (acts, grads)``; no gradients without labels."""
    src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
    with_grads = grads and label_column != ""
    acts: dict[str, list] = {}
    grad: dict[str, list] = {}
    device = next(model.parameters()).device
    for inp, target, lens in batches(sentences(rows), src_dict, tgt_dict, label_column,
                                     batch_size):
        a, g = states_fn(model, inp.to(device), target.to(device), tgt_dict.pad(), with_grads)
        collect(acts, a, lens, 1)
        collect(grad, g, lens, 1)
    return ({k: np.concatenate(v) for k, v in acts.items()},
            {k: np.concatenate(v) for k, v in grad.items()})


def forward(model, task, rows: pd.DataFrame, batch_size: int) -> None:
    """fairseq's own forward pass over the probe batches, nothing recorded."""
    device = next(model.parameters()).device
    with torch.no_grad():
        for inp, _, _ in batches(sentences(rows), task.source_dictionary,
                                 task.target_dictionary, None, batch_size):
            model(inp.to(device))


def evaluate_stream(spec: Spec, checkpoint: Path, data: Path, device: str = "cpu") -> dict:
    """LM test perplexity, or tagger accuracy beside the majority-class baseline."""
    result = evaluate.stream_eval(checkpoint, load_overrides(spec, data), device=device)
    if not spec.get("tags"):
        return {"test_ppl": round(2 ** result["loss_bits"], 2)}
    majority = evaluate.majority_tag(bins(data) / spec["tags"])
    baseline = result["target_counts"][majority] / result["word_tokens"]
    return {"test_accuracy": round(result["accuracy"], 4),
            "majority_baseline": round(float(baseline), 4),
            "majority_tag": result["dictionary"][majority]}


def stream_quality(spec: Spec, model, task, device: str, limit: int | None) -> dict[str, float]:
    """A loaded LM's validation perplexity (2 ** bits per token, </s> included: fairseq's
    valid_ppl) or a tagger's validation accuracy (over word tags); ``limit``: the first N
    token blocks of the valid stream (``tokens_per_sample`` tokens each)."""
    result = evaluate.token_metrics(model, task, "valid", device, limit)
    if spec.get("tags"):
        return {"valid_accuracy": result["accuracy"]}
    return {"valid_ppl": 2 ** result["loss_bits"]}


def stream_quality_keys(spec: Spec) -> dict[str, bool]:
    """``stream_quality``'s name and whether higher is better."""
    return {"valid_accuracy": True} if spec.get("tags") else {"valid_ppl": False}


@dataclass
class WordStreamConfig(LRSchedule):
    """The settings every model on the word stream has (conf/model/lstm_lm_*.yaml,
    transformer_lm_*.yaml and the taggers that inherit one); each kind adds its own."""

    kind: str = REQUIRED
    words: str = REQUIRED                 # binarised word stream (prepare/lm/bin/<words>)
    layers: int = setting(ge=1)
    embed_dim: int = setting(ge=1)
    dropout: float = setting(ge=0, lt=1)
    lr: float = setting(gt=0)
    clip_norm: float = setting(ge=0)
    tokens_per_sample: int = setting(ge=1)
    batch_size: int = setting(ge=1)
    max_update: int = setting(ge=1)
    # added to `seed` for this model's fairseq seed (initialisation, data order): taggers use
    # their own, so they do not start from their LM's weights; 0 = the LM's (the control)
    seed_offset: int = setting(ge=0)
    adaptive_softmax_cutoff: list[int] | None = setting(ge=1, help="null: the full softmax")


class WordStreamKind(ModelKind):
    """What the adapters of word-stream models share: their data flags, output layer and
    criterion, probe batches, states through ``layer_states``, evaluation and quality."""

    sides = ("lm",)
    # (model, inp, target, pad, grads) -> (acts, grads), each {layer: [B, T, dim]}
    layer_states: Callable

    @staticmethod
    def output_args(spec: Spec) -> list:
        """The criterion: an adaptive softmax (LMs with a cutoff) or cross-entropy."""
        cutoff = spec.get("adaptive_softmax_cutoff")
        if cutoff and not spec.get("tags"):
            # fairseq's adaptive loss refuses its default distributed backend, even on one CPU
            return ["--adaptive-softmax-cutoff", ",".join(map(str, cutoff)),
                    "--criterion", "adaptive_loss", "--ddp-backend", "legacy_ddp"]
        return ["--criterion", "cross_entropy"]

    def tokens_per_update(self, spec: Spec) -> int:
        return int(spec["tokens_per_sample"]) * int(spec["batch_size"])

    def load_overrides(self, spec: Spec, data: Path) -> dict:
        return load_overrides(spec, data)

    def label_column(self, spec: Spec, probe) -> str | None:
        return label_column(spec, probe)

    def states(self, model, task, spec, rows, label_column, grads, batch_size):
        return run_states(type(self).layer_states, model, task, rows, label_column, grads,
                          batch_size)

    def forward(self, model, task, rows, batch_size):
        forward(model, task, rows, batch_size)

    def evaluate(self, spec: Spec, checkpoint: Path, data: Path, device: str) -> dict:
        return evaluate_stream(spec, checkpoint, data, device)

    def quality(self, model, task, spec, data, device, limit, decoding=None):
        return stream_quality(spec, model, task, device, limit)

    def quality_keys(self, spec):
        return stream_quality_keys(spec)
