"""A Hugging Face causal LM's revisions (`kind: hf_causal_lm`), e.g. Pythia's ``step0`` ...
``step143000``: every layer's hidden state (``output_hidden_states``: the embeddings, then each
block's output) at each probe word, and the per-token gradient of the next-token loss at that
position with respect to it. Local files only (``local_files_only``, safetensors): nothing is
downloaded at run time.

``revisions`` lists folders. Each is a revision (a folder with config.json), a Hugging Face
cache folder of a model (``models--EleutherAI--pythia-70m``: its refs named ``step<N>``), or a
folder of revision folders; a revision's step is read from its name. ``steps`` picks some.
A sentence is read as running text (``hf_words``: its words joined by single spaces, subwords
mapped to words by character offsets) after the tokenizer's BOS token (EOS where it has none),
and its last subword predicts EOS; a word's state and gradient are its ``first`` or ``last``
subword's, or the ``mean`` over them (``subword``). Gradients take one backward pass per batch
(``hf_grads``). A layer is projected (``project``) at the state ``output_hidden_states``
records: the first block's input, a block's output, the last block's through the final norm.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.fields import REQUIRED, setting
from pipeline.checkpoints import CheckpointError
from pipeline.models import Spec, hf_grads, hooked, register, replace_output
from pipeline.models.external import ExternalKind, step_of
from pipeline.models.hf_words import TOKENIZATION, require_fast, word_pieces

log = logging.getLogger(__name__)
SUBWORD = ("first", "last", "mean")


@dataclass
class HFCausalLMConfig:
    """conf/model/<name>.yaml of a Hugging Face causal LM's checkpoint series."""

    kind: str = REQUIRED
    revisions: list[str] = REQUIRED     # revision, cache or parent folders (see the module)
    steps: list[int] | None = setting(ge=0, help="the revisions to read (null: every one)")
    subword: str = setting(choices=SUBWORD, help="a word's state: its first, last or mean "
                           "subword's")
    dtype: str = setting("float32", choices=("float32", "float64"))
    tokenization: str = setting(TOKENIZATION, choices=(TOKENIZATION,), help="how a sentence's "
                                "words are read (recorded in model.json; see hf_words)")


@register("hf_causal_lm")
class HFCausalLM(ExternalKind):
    """A causal LM's revisions read with ``transformers`` (any ``AutoModelForCausalLM``)."""

    Config = HFCausalLMConfig
    sides = ("lm",)
    family = "hf"

    def series(self, spec: Spec) -> list[tuple[int, Path]]:
        found = _revisions(tuple(spec["revisions"]))
        wanted = spec["steps"]
        if wanted is None:
            return found
        have = dict(found)
        missing = [s for s in wanted if s not in have]
        if missing:
            raise CheckpointError(
                f"revisions {[f'step{s}' for s in missing]} are not on this machine under "
                f"{list(spec['revisions'])} (local: {sorted(have)}); download them first, e.g. "
                "huggingface-cli download <model> --revision step<N>")
        return [(s, have[s]) for s in sorted(set(wanted))]

    def source(self, spec: Spec) -> str:
        return f"Hugging Face revisions in {', '.join(map(str, spec['revisions']))}"

    def family_of(self, spec: Spec) -> str:
        return str(self._config(spec).get("model_type", "hf"))

    def layers(self, spec: Spec) -> list[tuple[str, str, int]]:
        config = self._config(spec)
        n = config.get("num_hidden_layers", config.get("n_layer"))
        d = config.get("hidden_size", config.get("n_embd"))
        if n is None or d is None:
            raise CheckpointError(f"{self.source(spec)}: config.json names no layer count or "
                                  "width (num_hidden_layers/n_layer, hidden_size/n_embd)")
        return [("embed", "lm", int(d))] + [(f"layer_{i}", "lm", int(d))
                                             for i in range(1, int(n) + 1)]

    def _config(self, spec: Spec) -> dict:
        return _config_json(str(self.series(spec)[0][1]))

    def load_overrides(self, spec: Spec, data: Path) -> dict:
        return {}

    def load(self, spec: Spec, checkpoint: Path, data: Path, device: str):
        """(model, tokenizer) of a revision; the tokenizer is the series' (the first's)."""
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
        require_fast(tokenizer, str(checkpoint))
        model = _model(checkpoint, spec["dtype"]).to(device)
        return model, tokenizer

    def load_weights(self, model, checkpoint: Path, device: str) -> None:
        fresh = _model(checkpoint, str(model.dtype).removeprefix("torch."))
        model.load_state_dict(fresh.state_dict())
        model.eval()

    def states(self, model, task, spec, rows, label_column, grads, batch_size):
        return hf_states(model, task, rows, grads, batch_size, spec["subword"])

    def project(self, model, spec, layer, fn):
        return hf_project(model, layer, fn)


def hf_project(model, layer: str, fn) -> contextlib.AbstractContextManager:
    """``project`` at the states transformers records as ``hidden_states``: "embed" is the
    first block's input (a pre-hook replaces it), ``layer_i`` block i's output, and the last
    layer the base model's ``last_hidden_state`` (after the final norm), which it records as
    the last hidden state; refused where it records the last block's output instead."""
    import torch

    base, n = model.base_model, int(model.config.num_hidden_layers)
    lists = [m for m in base.children() if isinstance(m, torch.nn.ModuleList) and len(m) == n]
    if len(lists) != 1:
        raise NotImplementedError(f"{type(model).__name__}: no single list of its {n} blocks "
                                  "to hook a projection on")
    blocks = lists[0]
    points = {f"layer_{i}": block for i, block in enumerate(blocks[:-1], 1)}
    names = ["embed", *points, f"layer_{n}"]
    if layer not in names:
        raise ValueError(f"no layer {layer!r} to project; the model's layers: {names}")
    if layer in points:
        return replace_output(points, layer, fn)
    if layer == "embed":
        def first_input(module, args, kwargs):
            if args:
                return (fn(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}

        return hooked(lambda: [blocks[0].register_forward_pre_hook(
            first_input, prepend=True, with_kwargs=True)])
    if getattr(model.config, "tie_last_hidden_states", True) is False:
        raise NotImplementedError(f"{type(model).__name__} records its last block's output, "
                                  "not the final norm's: its last layer cannot be projected")

    def final(module, args, output):
        old = output.last_hidden_state
        output.last_hidden_state = new = fn(old)
        recorded = getattr(output, "hidden_states", None)
        if recorded is not None:
            if recorded[-1] is not old:
                raise NotImplementedError(f"{type(model).__name__}: its last hidden state is "
                                          "not last_hidden_state: cannot project it")
            output.hidden_states = (*recorded[:-1], new)
        return output

    return hooked(lambda: [base.register_forward_hook(final, prepend=True)])


def _model(checkpoint: Path, dtype: str):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        checkpoint, local_files_only=True, use_safetensors=True,
        dtype=getattr(torch, dtype)).eval()


@functools.cache
def _config_json(revision: str) -> dict:
    return json.loads((Path(revision) / "config.json").read_text())


@functools.cache
def _revisions(folders: tuple[str, ...]) -> list[tuple[int, Path]]:
    """(step, revision folder) of every revision under ``folders``, by step."""
    found: dict[int, Path] = {}

    def add(step: int | None, path: Path, why: str) -> None:
        if step is None:
            raise CheckpointError(f"{path}: no step in its name ({why}: e.g. step1000)")
        if step in found and found[step] != path:
            raise CheckpointError(f"step {step} twice: {found[step]} and {path}")
        found[step] = path

    for folder in map(Path, folders):
        if (folder / "config.json").is_file():
            add(step_of(folder.name), folder, "a revision folder")
        elif (folder / "refs").is_dir() and (folder / "snapshots").is_dir():  # HF cache
            for ref in sorted((folder / "refs").iterdir()):
                step = step_of(ref.name)
                if step is None:  # main, and other branches
                    continue
                snapshot = folder / "snapshots" / ref.read_text().strip()
                if not (snapshot / "config.json").is_file():
                    raise CheckpointError(f"{folder}: revision {ref.name} is referenced "
                                          f"but not downloaded ({snapshot} has no config.json)")
                add(step, snapshot, "a cache ref")
        elif folder.is_dir():
            children = sorted(p for p in folder.iterdir() if (p / "config.json").is_file())
            if not children:
                raise CheckpointError(f"{folder}: no revision (a folder with config.json) "
                                      "in it, and not a Hugging Face cache folder")
            for child in children:
                add(step_of(child.name), child, "a revision folder")
        else:
            raise CheckpointError(f"revisions: no folder {folder}")
    return sorted(found.items())


def _pool(values: np.ndarray, spans: list[tuple[int, int]], how: str) -> np.ndarray:
    """[positions, dim] -> [words, dim]: each word's first, last or mean subword row."""
    out = np.empty((len(spans), values.shape[1]), dtype=values.dtype)
    for w, (lo, hi) in enumerate(spans):
        out[w] = values[lo] if how == "first" else values[hi - 1] if how == "last" \
            else values[lo:hi].mean(0)
    return out


def _report_shared(sents: list[pd.DataFrame], pieces: list) -> None:
    """Log the subwords that span several words (each counts for every word it spans)."""
    found = [f"sentence {int(s.sent_index.iloc[0])}: {d}"
             for s, p in zip(sents, pieces, strict=True) for d in p.shared]
    if found:
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        log.warning("%d subwords span two or more words (the tokenizer merged a word with its "
                    "neighbour); each counts as a subword of every word it spans: %s%s",
                    len(found), "; ".join(found[:3]), more)


def hf_states(model, tokenizer, rows: pd.DataFrame, grads: bool, batch_size: int,
              subword: str = "last", one_pass: bool | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every hidden state (and the per-token gradient of that position's own next-token loss)
    at each row's word, in the rows' order. ``one_pass``: gradients from one backward pass
    per batch (None: where the model's attention allows it, ``hf_grads``), else one per
    position."""
    import torch

    sents = [g for _, g in rows.groupby("sent_index", sort=True)]
    pieces = [word_pieces(tokenizer, list(s.word.astype(str))) for s in sents]
    _report_shared(sents, pieces)
    if grads and one_pass is None:
        one_pass = hf_grads.one_pass_ok(model)
    # by length: less padding (and, per position, fewer backward passes per batch)
    order = np.argsort([len(p.ids) for p in pieces], kind="stable")
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    found: dict[str, dict[int, dict[str, np.ndarray]]] = {"act": {}, "grad": {}}
    with hf_grads.vertical(model) if grads and one_pass else \
            contextlib.nullcontext():
        for lo in range(0, len(sents), batch_size):
            which = order[lo: lo + batch_size]
            chunk = [pieces[i] for i in which]
            width = max(len(p.ids) for p in chunk)
            inp = torch.full((len(chunk), width), pad, dtype=torch.long)
            target = torch.full((len(chunk), width), -100, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for b, p in enumerate(chunk):
                inp[b, : len(p.ids)] = torch.tensor(p.ids)
                nxt = p.ids[1:] + ([eos] if eos is not None else [])
                target[b, : len(nxt)] = torch.tensor(nxt)
                mask[b, : len(p.ids)] = 1
            inp, target, mask = inp.to(device), target.to(device), mask.to(device)
            with torch.set_grad_enabled(grads):
                out = model(input_ids=inp, attention_mask=mask, output_hidden_states=True)
            arrays = {"act": out.hidden_states}
            if grads:
                logits = out.logits.float() if out.logits.dtype == torch.float16 else out.logits
                nll = torch.nn.functional.cross_entropy(
                    logits.transpose(1, 2), target, ignore_index=-100, reduction="none")
                arrays["grad"] = hf_grads.one_pass_grads(nll, out.hidden_states) if one_pass \
                    else hf_grads.own_position_grads(nll, out.hidden_states, target != -100)
            names = ["embed"] + [f"layer_{i}" for i in range(1, len(out.hidden_states))]
            for what, per_layer in arrays.items():
                for b, p in enumerate(chunk):
                    found[what][int(which[b])] = {
                        name: _pool(x[b, : len(p.ids)].detach().double().cpu().numpy(),
                                    p.spans, subword)
                        for name, x in zip(names, per_layer, strict=True)}
    acts, grad = ({name: np.concatenate([found[what][s][name] for s in sorted(found[what])])
                   for name in next(iter(found[what].values()), {})}
                  for what in ("act", "grad"))
    return acts, grad
