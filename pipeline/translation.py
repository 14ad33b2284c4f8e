"""A translation model's outputs on sentence pairs: its next-token log-probabilities
teacher-forced on the references, and its own translations (fairseq's SequenceGenerator),
and the pairs themselves (Multi30k test2016 from the prepared text, PUD from the probe
tokens), as subword pieces and as words."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

SETS = ("test2016", "pud")


@dataclass(frozen=True)
class Pairs:
    """Sentence pairs: source and reference pieces (the NMT's units), and words."""

    name: str
    source: list[list[str]]
    target: list[list[str]]
    source_text: list[str]
    target_text: list[str]


def lines(path: Path) -> list[str]:
    """A text file's lines."""
    return Path(path).read_text(encoding="utf-8").splitlines()


def load_pairs(data: Path, name: str, max_sentences: int | None) -> Pairs:
    """The first ``max_sentences`` pairs of a set, from the prepare stage's output."""
    if name not in SETS:
        raise ValueError(f"translate.sets names {name!r}; the sets are {list(SETS)}")
    n = max_sentences
    if name == "test2016":
        text = Path(data) / "nmt" / "text"
        return Pairs(name, [s.split() for s in lines(text / "test.en")[:n]],
                     [s.split() for s in lines(text / "test.de")[:n]],
                     lines(text / "ref.test.en")[:n], lines(text / "ref.test.de")[:n])
    rows = pd.read_parquet(Path(data) / "probe_tokens.parquet",
                           columns=["probe", "side", "sent_index", "position", "token",
                                    "word_index", "word"])
    rows = rows[rows.probe == name].sort_values(["side", "sent_index", "position"])
    keep = sorted(rows.sent_index.unique())[:n]
    rows = rows[rows.sent_index.isin(keep)]
    sides = {}
    for side in ("source", "target"):
        part = rows[rows.side == side]
        pieces = [list(g.token) for _, g in part.groupby("sent_index", sort=True)]
        text = [" ".join(g.drop_duplicates("word_index").word)
                for _, g in part.groupby("sent_index", sort=True)]
        sides[side] = (pieces, text)
    return Pairs(name, sides["source"][0], sides["target"][0], sides["source"][1],
                 sides["target"][1])


def _batches(n: int, size: int, lengths: list[int]):
    order = np.argsort(lengths, kind="stable")  # by length: less padding
    for start in range(0, n, size):
        yield [int(i) for i in order[start:start + size]]


def _ids(dictionary, pieces: list[str]) -> list[int]:
    return [dictionary.index(p) for p in pieces] + [dictionary.eos()]


def _padded(seqs: list[list[int]], pad: int) -> torch.Tensor:
    out = torch.full((len(seqs), max(map(len, seqs))), pad, dtype=torch.long)
    for b, s in enumerate(seqs):
        out[b, : len(s)] = torch.tensor(s)
    return out


def teacher_forced(model, dictionary, pairs: Pairs, batch_size: int) -> list[np.ndarray]:
    """Per pair, the [reference pieces + 1, V] log-probabilities of the next piece after
    each reference prefix (the last row: of </s> after the whole reference)."""
    device = next(model.parameters()).device
    pad, eos = dictionary.pad(), dictionary.eos()
    out: list[np.ndarray] = [np.empty(0)] * len(pairs.source)
    with torch.no_grad():
        for idx in _batches(len(pairs.source), batch_size, [len(t) for t in pairs.target]):
            src = _padded([_ids(dictionary, pairs.source[i]) for i in idx], pad).to(device)
            tgt = [_ids(dictionary, pairs.target[i]) for i in idx]
            prev = _padded([[eos] + t[:-1] for t in tgt], pad).to(device)
            net = model(src, (src != pad).sum(1), prev)
            lprobs = model.get_normalized_probs(net, log_probs=True).float().cpu().numpy()
            for b, i in enumerate(idx):
                out[i] = lprobs[b, : len(tgt[b])]
    return out


def translate(model, dictionary, pairs: Pairs, beam: int, max_len_a: float, max_len_b: int,
              batch_size: int) -> list[list[str]]:
    """Each source's best translation (fairseq's SequenceGenerator: beam search, greedy at
    beam 1), as pieces without </s>."""
    from fairseq.sequence_generator import SequenceGenerator

    device = next(model.parameters()).device
    generator = SequenceGenerator([model], dictionary, beam_size=beam, max_len_a=max_len_a,
                                  max_len_b=max_len_b)
    pad = dictionary.pad()
    out: list[list[str]] = [[] for _ in pairs.source]
    with torch.no_grad():
        for idx in _batches(len(pairs.source), batch_size, [len(s) for s in pairs.source]):
            src = _padded([_ids(dictionary, pairs.source[i]) for i in idx], pad).to(device)
            sample = {"net_input": {"src_tokens": src, "src_lengths": (src != pad).sum(1)}}
            for b, hyps in enumerate(generator.generate([model], sample)):
                tokens = hyps[0]["tokens"].tolist()
                out[idx[b]] = [dictionary[t] for t in tokens if t != dictionary.eos()]
    return out


def detokenize(pieces: list[str]) -> str:
    """Sentencepiece pieces back to text (the '▁' word-start marker becomes a space)."""
    return "".join(pieces).replace("\u2581", " ").strip()


def bleu(texts: list[str], pairs: Pairs) -> float:
    """Corpus BLEU (sacrebleu) of detokenised translations against the pairs' reference
    texts."""
    import sacrebleu

    return sacrebleu.corpus_bleu(texts, [pairs.target_text]).score


__all__ = ["SETS", "Pairs", "bleu", "detokenize", "load_pairs", "teacher_forced", "translate"]
