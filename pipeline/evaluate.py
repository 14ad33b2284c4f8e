"""Final evaluation tools, used by the model adapters: loading a checkpoint, token-level loss
and accuracy on a word stream (LM perplexity; tagger next-tag accuracy over word tags, not
sentence ends, beside the majority-class baseline) or teacher-forced on translation pairs, of a
checkpoint or of a loaded model (``token_metrics``: the compress stage's projected or pruned
models), and BLEU on Multi30k test2016 (sacrebleu on the detokenised fairseq-generate output)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from pipeline import jobs
from pipeline.runtime import REPO_ROOT, import_fairseq, subprocess_env


def load_model(checkpoint: Path, overrides: dict):
    """Load one of our checkpoints with its task (only for checkpoints the pipeline wrote)."""
    import_fairseq()
    from fairseq import checkpoint_utils

    import pipeline.fairseq_plugin  # noqa: F401  registers the tagging task and tagger model

    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(checkpoint)], arg_overrides=overrides)
    return models[0].eval(), cfg, task


def stream_eval(checkpoint: Path, overrides: dict, split: str = "test",
                device: str = "cpu", limit: int | None = None) -> dict:
    """Token-level loss and accuracy of an LM or tagger on a split (no dropout, no grad):
    ``token_metrics`` of the checkpoint loaded against ``overrides``' data."""
    model, _, task = load_model(checkpoint, overrides)
    model.to(device)
    task.load_dataset(split)
    return token_metrics(model, task, split, device, limit)


def first_items(dataset, n: int):
    """A fairseq dataset restricted to its first ``n`` items (indices < n), batched and
    collated as the whole one is."""
    from fairseq.data import BaseWrapperDataset

    class First(BaseWrapperDataset):
        def ordered_indices(self):
            order = self.dataset.ordered_indices()
            return order[order < n]

    return First(dataset)


def token_metrics(model, task, split: str, device: str, limit: int | None = None) -> dict:
    """Token-level loss (bits per target token, </s> included: fairseq's nll_loss) and
    accuracy (over targets other than </s>) of a loaded model in eval mode on a split of its
    task's data, loaded here if the task has not loaded it: an LM's or tagger's stream, or a
    translation's pairs teacher-forced. ``limit``: its first N sequences in file order (token
    blocks of a stream, sentence pairs), batched as the whole split is (64 a batch)."""
    import torch
    from fairseq import utils

    if model.training:
        raise ValueError("token_metrics reads a model in eval mode (no dropout); call .eval()")
    if limit is not None and limit < 1:
        raise ValueError(f"token_metrics: limit {limit} reads no sequence (>= 1, or None: all)")
    if split not in task.datasets:
        task.load_dataset(split)
    dataset = task.dataset(split)
    if limit is not None:
        dataset = first_items(dataset, limit)
    pad, eos = task.target_dictionary.pad(), task.target_dictionary.eos()
    itr = task.get_batch_iterator(dataset=dataset, max_sentences=64, num_workers=0,
                                  disable_iterator_cache=True).next_epoch_itr(shuffle=False)
    nll = correct = n = n_words = 0
    counts = np.zeros(len(task.target_dictionary), dtype=np.int64)
    with torch.no_grad():
        for sample in itr:
            sample = utils.move_to_cuda(sample) if device.startswith("cuda") else sample
            lprobs = model.get_normalized_probs(model(**sample["net_input"]), log_probs=True)
            target = sample["target"]
            mask = target != pad
            nll -= lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)[mask].sum().item()
            n += int(mask.sum())
            words = mask & (target != eos)  # accuracy over word tags, not sentence ends
            correct += (lprobs.argmax(-1) == target)[words].sum().item()
            n_words += int(words.sum())
            counts += np.bincount(target[words].cpu().numpy(), minlength=len(counts))
    return {"loss_bits": nll / n / math.log(2), "accuracy": correct / n_words, "tokens": n,
            "word_tokens": n_words, "target_counts": counts,
            "dictionary": task.target_dictionary}


def majority_tag(tags_dir: Path) -> int:
    """The most frequent tag id in a binarised training tag stream."""
    import_fairseq()
    from fairseq.data import Dictionary, data_utils

    dictionary = Dictionary.load(str(tags_dir / "dict.txt"))
    data = data_utils.load_indexed_dataset(str(tags_dir / "train"), dictionary)
    counts = np.zeros(len(dictionary), dtype=np.int64)
    for i in range(len(data)):
        counts += np.bincount(data[i].numpy(), minlength=len(counts))
    counts[: dictionary.nspecial] = 0  # <s> <pad> </s> <unk> are not tags
    return int(counts.argmax())


def generate_dir(checkpoint: Path) -> Path:
    """Where fairseq-generate's output for a checkpoint goes: <unit>/generate/<checkpoint>/."""
    return checkpoint.parent.parent / "generate" / checkpoint.stem


def bleu(checkpoint: Path, prepared: Path, beam: int, device: str) -> float:
    """Detokenised BLEU of beam search on the prepared test set (Multi30k test2016)."""
    import sacrebleu

    args = [str(prepared / "nmt" / "bin"), "--path", str(checkpoint), "--gen-subset", "test",
            "--beam", str(beam), "--batch-size", "64", "--post-process", "sentencepiece",
            # hypotheses of at most 1.2 x source + 10 tokens: an untrained model would
            # otherwise fill fairseq's default 200 tokens for every sentence (minutes on a CPU)
            "--max-len-a", "1.2", "--max-len-b", "10",
            "--user-dir", str(Path(REPO_ROOT) / "pipeline" / "fairseq_plugin"),
            "--results-path", str(generate_dir(checkpoint))]
    if device == "cpu":
        args.append("--cpu")
    log_path = generate_dir(checkpoint) / "generate.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    code = jobs.run_main("fairseq_cli.generate:cli_main", args, log_path, subprocess_env(),
                         os.getcwd())
    if code != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"fairseq-generate failed with exit code {code} ({log_path}):\n{tail}")
    hyps = {}
    with open(generate_dir(checkpoint) / "generate-test.txt", encoding="utf-8") as f:
        for line in f:
            if line.startswith("D-"):
                key, _, text = line.rstrip("\n").split("\t", 2)
                hyps[int(key[2:])] = text
    refs = (prepared / "nmt" / "text" / "ref.test.de").read_text(encoding="utf-8").splitlines()
    if len(hyps) != len(refs):
        raise RuntimeError(f"fairseq-generate gave {len(hyps)} hypotheses for {len(refs)} refs")
    return sacrebleu.corpus_bleu([hyps[i] for i in range(len(refs))], [refs]).score
