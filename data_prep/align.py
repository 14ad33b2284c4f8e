"""Word <-> subword alignment: every subword carries its word's tags, read or predicted."""

from __future__ import annotations

from collections.abc import Sequence


def encode_words(words: Sequence[str], encode) -> tuple[list[str], list[int]]:
    """Split each word into subwords with `encode(word) -> list[str]`; return the subwords and,
    for each, the index of its word. Words are encoded one at a time so the mapping is exact."""
    pieces: list[str] = []
    owner: list[int] = []
    for i, word in enumerate(words):
        sub = encode(word.replace(" ", "")) or ["<unk>"]
        pieces.extend(sub)
        owner.extend([i] * len(sub))
    return pieces, owner


def aligned_tags(word_tags: Sequence[str], owner: Sequence[int],
                 eos_tag: str = "</s>") -> tuple[list[str], list[str]]:
    """Input-aligned tags (the tag of the token read at each position) and target-aligned tags
    (the tag of the token predicted next, as Saphra & Lopez align them; the last one predicts
    end of sentence)."""
    inputs = [word_tags[w] for w in owner]
    targets = inputs[1:] + [eos_tag]
    return inputs, targets
