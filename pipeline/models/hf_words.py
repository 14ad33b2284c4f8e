"""A probe sentence's words as a Hugging Face model reads them: the words joined by single
spaces are tokenized as running text (the probe table keeps no original text), and each
subword is mapped to the words its characters fall in (``return_offsets_mapping``), so the ids
are exactly ``tokenizer(text)``'s whatever the tokenizer's class and its prefix-space flag.

A subword of whitespace only (a bare ``Ġ`` or ``▁``) belongs to the word after it, whose
leading space it is. A subword that spans two words (a tokenizer that merges across spaces)
belongs to each of them and is reported in ``Pieces.shared``.
"""

from __future__ import annotations

from typing import NamedTuple

from pipeline.checkpoints import CheckpointError

TOKENIZATION = "running text, offsets"  # recorded in model.json (the spec's `tokenization`)


class Pieces(NamedTuple):
    """One sentence as the model reads it: ``ids`` after the BOS (or EOS) token, ``spans``
    each word's subword positions in ``ids`` ([start, stop)), ``shared`` the subwords that span
    several words, described for the log."""

    ids: list[int]
    spans: list[tuple[int, int]]
    shared: list[str]


def require_fast(tokenizer, where: str) -> None:
    """A tokenizer without character offsets (a slow, Python one) cannot map subwords to
    words: refuse it, saying where it came from."""
    if not getattr(tokenizer, "is_fast", False):
        raise CheckpointError(
            f"{where}: the tokenizer ({type(tokenizer).__name__}) is a slow one, which gives no "
            "character offsets to map subwords to words; save its fast version (tokenizer.json) "
            "with the revision")


def start_token(tokenizer) -> int | None:
    """The token a sentence is read after: BOS, or EOS where the tokenizer has none."""
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else \
        tokenizer.eos_token_id


def word_pieces(tokenizer, words: list[str]) -> Pieces:
    """``words`` joined by single spaces, tokenized as running text (no special tokens) after
    the start token, each subword mapped to its words by character offsets."""
    text = " ".join(words)
    bounds, at = [], 0
    for word in words:
        bounds.append((at, at + len(word)))
        at += len(word) + 1
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    start = start_token(tokenizer)
    lead = [] if start is None else [start]
    first = len(lead)
    owners: list[list[int]] = []
    shared = []
    for lo, hi in enc["offset_mapping"]:
        s, e = lo, hi  # byte-level offsets may hold the leading space: trim it
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if s == e:  # whitespace only: the next word's leading space (the last word's at the end)
            owners.append([next((w for w, (b, _) in enumerate(bounds) if b >= lo),
                                len(words) - 1)])
            continue
        mine = [w for w, (b, f) in enumerate(bounds) if b < e and s < f]
        if len(mine) > 1:
            shared.append(f"{text[lo:hi]!r} spans words {mine[0]}-{mine[-1]} "
                          f"({' '.join(words[mine[0]: mine[-1] + 1])!r})")
        owners.append(mine)
    spans = []
    for w, word in enumerate(words):
        at = [first + i for i, mine in enumerate(owners) if w in mine]
        if not at:
            raise ValueError(f"word {w} ({word!r}) has no subword in {text!r}")
        if at != list(range(at[0], at[-1] + 1)) or (spans and at[0] < spans[-1][1] - 1):
            raise ValueError(f"word {w} ({word!r}): its subwords {at} are not contiguous after "
                             f"the previous word's in {text!r}")
        spans.append((at[0], at[-1] + 1))
    return Pieces(lead + list(enc["input_ids"]), spans, shared)
