"""Word-level vocabularies written as fairseq dictionaries (`word count` per line)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path


def count_words(sentences: Iterable[list[str]]) -> Counter:
    counts: Counter = Counter()
    for words in sentences:
        counts.update(words)
    return counts


def top_k(counts: Counter, k: int) -> list[tuple[str, int]]:
    """The k most frequent entries, ties broken alphabetically so the result is deterministic."""
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def write_fairseq_dict(entries: list[tuple[str, int]], path: Path) -> None:
    """fairseq adds <s> <pad> </s> <unk> itself; they must not be listed."""
    special = {"<s>", "<pad>", "</s>", "<unk>"}
    with open(path, "w", encoding="utf-8") as f:
        for word, count in entries:
            if word not in special:
                f.write(f"{word} {count}\n")
