"""The extract stage: for every model, checkpoint and probe set, each layer's activation at
every token and the gradient of that token's own loss with respect to it.

LSTM LMs and taggers: the embedding output and each LSTM layer's hidden state, recorded with
hooks on the cells (fairseq's decoder returns only the top layer). The gradient of token t's
loss with respect to a state at t follows only paths within time step t (the recurrence carries
state forward in time, and the loss at t cannot depend on later steps), so all of them come
from one backward pass through a *vertical* recomputation of the cells with the previous
step's states held constant. Transformer NMT: the encoder and decoder embedding outputs and
every layer (teacher forcing on the reference); decoder gradients of each target token's loss
at its own position, the same way (a vertical recomputation in which each position reads the
others' keys and values as constants), and encoder gradients of the sentence's loss. Models in
eval mode.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from analysis import repstore
from pipeline import checkpoints, evaluate
from pipeline.runtime import set_threads
from pipeline.train import longest_first, model_specs

log = logging.getLogger(__name__)
TOKEN_COLUMNS = ["probe", "side", "sent_id", "sent_index", "position", "token", "word_index",
                 "word", "first_subword", "pos", "pos_target", "upos", "upos_target", "xpos",
                 "genre", "doc_id", "train_freq"]


# ---------------------------------------------------------------------------- token tables

def probe_rows(probe_tokens: pd.DataFrame, probe: str, max_tokens: int | None) -> pd.DataFrame:
    """The probe's token rows, whole sentences in order, capped at `max_tokens` per side."""
    rows = probe_tokens[probe_tokens.probe == probe]
    if rows.empty:
        raise ValueError(f"probe {probe!r} has no tokens; "
                         f"probes: {sorted(probe_tokens.probe.unique())}")
    first_side = rows.side.iloc[0]
    lengths = rows[rows.side == first_side].groupby("sent_index", sort=True).size()
    if max_tokens is not None:
        keep = lengths.index[lengths.cumsum().to_numpy() <= max_tokens]
        rows = rows[rows.sent_index.isin(keep)]
    rows = rows.sort_values(["side", "sent_index", "position"], kind="stable")
    return rows.reset_index(drop=True)


def sentences(rows: pd.DataFrame, side: str) -> list[pd.DataFrame]:
    part = rows[rows.side == side]
    return [g for _, g in part.groupby("sent_index", sort=True)]


# ---------------------------------------------------------------------------- LSTM models

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


def lstm_states(model, inp: torch.Tensor, target: torch.Tensor | None, pad: int,
                grads: bool) -> tuple[dict, dict, torch.Tensor]:
    """Activations (and per-token own-loss gradients) of every layer, [B, T, dim] each, plus
    the decoder's own features for checking."""
    dec = model.decoder
    rec = LSTMRecorder(dec)
    try:
        with torch.no_grad():
            features, _ = dec.extract_features(inp)
    finally:
        rec.remove()
    hidden, cells = rec.stacked()
    with torch.no_grad():
        emb = dec.embed_tokens(inp)
    names = ["embed"] + [f"lstm_{i + 1}" for i in range(len(hidden))]
    acts = dict(zip(names, [emb, *hidden], strict=True))
    if not grads:
        return acts, {}, features
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
    lprobs = model.get_normalized_probs((dec.output_layer(top), None), log_probs=True)
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1).masked_fill(target == pad, 0)
    gradients = torch.autograd.grad(nll.sum(), outs)
    return acts, dict(zip(names, gradients, strict=True)), features


def lstm_batches(sents: list[pd.DataFrame], src_dict, tgt_dict, tag_column: str | None,
                 batch_size: int):
    """Right-padded batches: input `</s> w1..wn`, target `w1..wn </s>` (LM) or the tags of
    w1..wn then `</s>` (tagger); rows kept are positions 1..n (reading w1..wn)."""
    pad, eos = src_dict.pad(), src_dict.eos()
    for start in range(0, len(sents), batch_size):
        chunk = sents[start:start + batch_size]
        ids = [[src_dict.index(t) for t in s.token] for s in chunk]
        if tag_column is None:
            tgt = [i + [eos] for i in ids]
        elif tag_column:
            tgt = [[tgt_dict.index(t) for t in s[tag_column]] + [tgt_dict.eos()] for s in chunk]
        else:
            tgt = [[tgt_dict.eos()] * (len(i) + 1) for i in ids]  # no gold tags: unused
        width = max(len(i) for i in ids) + 1
        inp = torch.full((len(chunk), width), pad, dtype=torch.long)
        target = torch.full((len(chunk), width), tgt_dict.pad(), dtype=torch.long)
        for b, (i, t) in enumerate(zip(ids, tgt, strict=True)):
            inp[b, : len(i) + 1] = torch.tensor([eos] + i)
            target[b, : len(t)] = torch.tensor(t)
        yield inp, target, [len(i) for i in ids]


# ---------------------------------------------------------------------------- Transformer

def _wide(x: torch.Tensor) -> torch.Tensor:
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
    p = torch.softmax(_wide(scores) + future, -1).to(x)
    out = p @ vd + p.diagonal(dim1=1, dim2=2).unsqueeze(-1) * (v - vd)
    return attn.out_proj(out.transpose(0, 1).reshape(T, B, C))


def _vertical_layer(layer, x: torch.Tensor, enc_out: torch.Tensor, enc_pad) -> torch.Tensor:
    """One fairseq TransformerDecoderLayer (eval mode) with the vertical self-attention."""
    assert layer.c_attn is None and layer.attn_ln is None and layer.ffn_layernorm is None
    assert layer.w_resid is None and not layer.cross_self_attention

    def block(x, norm, f):
        return x + f(norm(x)) if layer.normalize_before else norm(x + f(x))

    def cross(y):
        return layer.encoder_attn(query=y, key=enc_out, value=enc_out, key_padding_mask=enc_pad,
                                  static_kv=True, need_weights=False)[0]

    x = block(x, layer.self_attn_layer_norm, lambda y: _vertical_self_attn(layer.self_attn, y))
    x = block(x, layer.encoder_attn_layer_norm, cross)
    return block(x, layer.final_layer_norm,
                 lambda y: layer.fc2(layer.activation_fn(layer.fc1(y))))


def decoder_token_grads(model, enc: dict, embedded: torch.Tensor, target: torch.Tensor,
                        keep: torch.Tensor) -> list[torch.Tensor]:
    """d(loss of token t)/d(decoder state at t) for every layer ([T, B, C] each), in one
    backward pass. With causal attention, a state at t reaches the loss at t only through the
    states above it at t (later positions cannot reach back), so the decoder is recomputed with
    the other positions' keys and values held constant and the summed loss differentiated."""
    dec = model.decoder
    enc_out = enc["encoder_out"][0].detach()
    enc_pad = enc["encoder_padding_mask"][0] if enc["encoder_padding_mask"] else None
    states = [embedded.detach().requires_grad_()]
    for layer in dec.layers:
        states.append(_vertical_layer(layer, states[-1], enc_out, enc_pad))
    x = states[-1] if dec.layer_norm is None else dec.layer_norm(states[-1])
    x = x.transpose(0, 1)
    if dec.project_out_dim is not None:
        x = dec.project_out_dim(x)
    lprobs = torch.log_softmax(_wide(dec.output_layer(x)), -1)
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1) * keep
    return list(torch.autograd.grad(nll.sum(), states))


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
        return acts, {}, enc["encoder_out"][0].transpose(0, 1)
    lprobs = torch.log_softmax(_wide(model.decoder.output_layer(x)), -1)
    nll = (-lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)) * keep
    enc_grads = torch.autograd.grad(nll.sum(), enc_states)
    dec_grads = decoder_token_grads(model, enc, dec_states[0], target, keep)
    grads_out = {n: g.transpose(0, 1) for n, g in zip(names_enc + names_dec,
                                                      list(enc_grads) + dec_grads, strict=True)}
    return acts, grads_out, enc["encoder_out"][0].transpose(0, 1)


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


# ---------------------------------------------------------------------------- per checkpoint

def _collect(store: dict[str, list], arrays: dict, lengths: list[int], offset: int) -> None:
    """Append the kept rows (positions offset..offset+len-1) of each sentence."""
    for name, batch in arrays.items():
        batch = batch.detach().float().cpu().numpy()
        store.setdefault(name, []).extend(batch[b, offset: offset + n]
                                          for b, n in enumerate(lengths))


def extract_checkpoint(model, spec: dict, task, rows: pd.DataFrame, grads: bool,
                       tag_column: str | None, batch_size: int) -> tuple[dict, dict]:
    """All layers' activations and gradients for one loaded model: {layer: tokens × dim}."""
    acts: dict[str, list] = {}
    grad: dict[str, list] = {}
    if spec["kind"] == "nmt":
        src_s, tgt_s = sentences(rows, "source"), sentences(rows, "target")
        order = np.argsort([len(t) for t in tgt_s], kind="stable")  # by length: less padding
        per_sent: dict[str, dict] = {"act": {}, "grad": {}}
        for idx, src, prev, target, keep, src_lens, tgt_lens in nmt_batches(
                src_s, tgt_s, task.source_dictionary, batch_size, order):
            a, g, _ = nmt_states(model, src, prev, target, task.source_dictionary.pad(), grads,
                                 keep)
            for kind, arrays in (("act", a), ("grad", g)):
                for name, batch in arrays.items():
                    lens, offset = (src_lens, 0) if name.startswith("enc") else (tgt_lens, 1)
                    batch = batch.detach().float().cpu().numpy()
                    for b, (i, n) in enumerate(zip(idx, lens, strict=True)):
                        per_sent[kind].setdefault(name, {})[i] = batch[b, offset: offset + n]
        for kind, store in (("act", acts), ("grad", grad)):
            for name, by_sentence in per_sent[kind].items():
                store[name] = [by_sentence[i] for i in range(len(src_s))]
    else:
        src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
        with_grads = grads and tag_column != ""
        for inp, target, lens in lstm_batches(sentences(rows, "lm"), src_dict, tgt_dict,
                                              tag_column, batch_size):
            a, g, _ = lstm_states(model, inp, target, tgt_dict.pad(), with_grads)
            _collect(acts, a, lens, 1)
            _collect(grad, g, lens, 1)
    return ({k: np.concatenate(v) for k, v in acts.items()},
            {k: np.concatenate(v) for k, v in grad.items()})


def tag_column_for(spec: dict, probe: str) -> str | None:
    """The token column holding a model's gold labels on a probe (the tags of w1..wn; the
    targets are these shifted by one): None for LMs (next word), '' when the probe has no gold
    labels of the tagger's kind (then activations only)."""
    if spec["kind"] != "tagger":
        return None
    available = {"brown_probe": {"pos": "pos", "topic": "genre"}, "ewt_test": {"pos": "pos"}}
    return available.get(probe, {}).get(spec["tags"], "")


def layer_info(acts: dict[str, np.ndarray]) -> dict[str, dict]:
    side = {"enc": "source", "dec": "target"}
    return {name: {"side": side.get(name[:3], "lm"), "dim": int(a.shape[1])}
            for name, a in acts.items()}


def extracted_checkpoints(spec: dict, table: pd.DataFrame, extract: dict) -> pd.DataFrame:
    """The rows of a checkpoints table that get extracted: all, or only a tagger's last one
    (`tagger_checkpoints: last`; the analyses compare against it)."""
    if spec["kind"] == "tagger" and extract.get("tagger_checkpoints", "all") == "last":
        return table.iloc[-1:]
    return table


def extract_model(name: str, spec: dict, model_dir: Path, prepared: Path, out: Path,
                  extract: dict) -> dict:
    """Every extracted checkpoint of one model on each of its probe sets, into out/<probe>/."""
    table = extracted_checkpoints(spec, checkpoints.verify(model_dir), extract)
    probe_tokens = pd.read_parquet(prepared / "probe_tokens.parquet")
    probes = extract["nmt_probes"] if spec["kind"] == "nmt" else extract["lm_probes"]
    overrides = ({"data": str(prepared / "nmt" / "bin")} if spec["kind"] == "nmt"
                 else evaluate.stream_overrides(spec, prepared))
    first = model_dir / "checkpoints" / table.file.iloc[0]
    model, _, task = evaluate.load_model(first, overrides)
    summary = {}
    for probe in probes:
        rows = probe_rows(probe_tokens, probe, extract["max_tokens_per_probe"])
        if spec["kind"] == "lm" or spec["kind"] == "tagger":
            rows = rows.assign(side="lm")
        root = out / probe
        tag_column = tag_column_for(spec, probe)
        with_grads = bool(extract["gradients"])
        for step, file in tqdm(list(zip(table.step, table.file, strict=True)),
                               desc=f"{name}/{probe}", unit="ckpt", leave=False):
            if (repstore.step_dir(root, step) / "done").is_file():
                continue
            path = checkpoints.checkpoint_path(model_dir, step)
            state = torch.load(path, map_location="cpu", weights_only=False)
            model.load_state_dict(state["model"])
            model.eval()
            acts, grads = extract_checkpoint(model, spec, task, rows, with_grads, tag_column,
                                             extract["batch_size"])
            if not (root / "tokens.parquet").is_file():
                repstore.write_tokens(root, rows[TOKEN_COLUMNS], layer_info(acts))
            for layer, info in repstore.layers(root).items():
                n = int((rows.side == info["side"]).sum())
                assert len(acts[layer]) == n, f"{layer}: {len(acts[layer])} rows, {n} tokens"
            repstore.write_arrays(root, step, "act", acts, extract["dtype"])
            if grads:
                repstore.write_arrays(root, step, "grad", grads, extract["dtype"])
            (repstore.step_dir(root, step) / "done").write_text(file)
        summary[probe] = {"tokens": int(len(rows)), "checkpoints": len(table)}
    return summary


def disk_estimate(specs: dict, train_dir: Path, prepared: Path, extract: dict) -> float:
    """Bytes the extraction will write, from token counts, layer widths and checkpoints."""
    probe_tokens = pd.read_parquet(prepared / "probe_tokens.parquet",
                                   columns=["probe", "side", "sent_index", "position"])
    itemsize = np.dtype(extract["dtype"]).itemsize
    total = 0.0
    for name, spec in specs.items():
        n_ckpt = len(extracted_checkpoints(spec, checkpoints.read_table(train_dir / name),
                                           extract))
        if spec["kind"] == "nmt":
            probes, width = extract["nmt_probes"], (spec["layers"] + 1) * spec["embed_dim"]
        else:
            probes = extract["lm_probes"]
            width = spec["embed_dim"] + spec["layers"] * spec["hidden"]
        for probe in probes:
            n = len(probe_rows(probe_tokens, probe, extract["max_tokens_per_probe"]))
            total += n * width * itemsize * n_ckpt * (2 if extract["gradients"] else 1)
    return total


def _worker_init(threads: int) -> None:
    set_threads(threads)


def _extract_job(job: tuple) -> dict:
    return extract_model(*job)


def run_extract(cfg: DictConfig, out: Path, inputs: dict[str, Path]) -> dict:
    """Stage function: representations of every trained model into out/<model>/<probe>/;
    `train.parallel` models at a time, each in its own process (one torch thread each)."""
    extract = OmegaConf.to_container(cfg.extract, resolve=True)
    specs = model_specs(cfg)
    prepared, train_dir = inputs["prepare"], inputs["train"]
    log.info("extraction will write about %.0f MB",
             disk_estimate(specs, train_dir, prepared, extract) / 1e6)
    names = longest_first(specs)
    jobs = [(n, specs[n], train_dir / n, prepared, out / n, extract) for n in names]
    bar = {"total": len(names), "desc": "models", "unit": "model"}
    workers = max(1, min(int(cfg.train.parallel), len(names)))
    if workers == 1:
        return dict(zip(names, tqdm(map(_extract_job, jobs), **bar), strict=True))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init, initargs=(int(cfg.train.threads),)) as pool:
        return dict(zip(names, tqdm(pool.map(_extract_job, jobs), **bar), strict=True))
