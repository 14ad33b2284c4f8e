"""Deterministic, genre-stratified document splits for Brown."""

from __future__ import annotations

import random
from collections import defaultdict


def split_documents(doc_genre: dict[str, str], fractions: dict[str, float],
                    seed: int) -> dict[str, str]:
    """Assign each document to a split, stratified by genre; the remainder goes to `train`.

    Systematic sampling: within each genre the documents are shuffled with `seed` and given
    evenly spaced ranks in (0, 1); all documents are then ordered by rank and cut at the
    cumulative fractions. Every split gets its exact share of documents overall and each genre
    its proportional share (to within one document), even when genres are small.
    """
    if sum(fractions.values()) >= 1:
        raise ValueError(f"split fractions {fractions} leave nothing for train")
    by_genre: dict[str, list[str]] = defaultdict(list)
    for doc, genre in sorted(doc_genre.items()):
        by_genre[genre].append(doc)
    ranked = []
    for genre, docs in sorted(by_genre.items()):
        rng = random.Random(f"{seed}-{genre}")
        rng.shuffle(docs)
        offset = rng.random()  # spreads genres' ranks so ties do not favour one genre
        ranked += [((i + offset) / len(docs), doc) for i, doc in enumerate(docs)]
    ranked.sort()
    assignment = {doc: "train" for doc in doc_genre}
    start, cumulative = 0, 0.0
    for name in sorted(fractions):
        cumulative += fractions[name]
        end = round(cumulative * len(ranked))
        for _, doc in ranked[start:end]:
            assignment[doc] = name
        start = end
    return assignment


def subsample_documents(doc_genre: dict[str, str], per_genre: int | None) -> list[str]:
    """The first `per_genre` documents (by id) of every genre; all when None."""
    kept: dict[str, list[str]] = defaultdict(list)
    for doc, genre in sorted(doc_genre.items()):
        if per_genre is None or len(kept[genre]) < per_genre:
            kept[genre].append(doc)
    return sorted(d for docs in kept.values() for d in docs)
