"""Sentence, token and tag counts per corpus and split."""

from __future__ import annotations

import pandas as pd


def corpus_stats(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (corpus, split): sentences, tokens, distinct tags and per-tag token counts."""
    rows = []
    for (corpus, split), part in table.groupby(["corpus", "split"], sort=True):
        tag_col = "pos" if part.pos.notna().all() else "semtag"
        tags = part[tag_col].explode()
        row = {"corpus": corpus, "split": split, "sentences": len(part),
               "tokens": int(part.words.map(len).sum()), "tag_set": tag_col,
               "tags": tags.nunique()}
        row.update({f"n_{t}": int(c) for t, c in tags.value_counts().items()}
                   if tag_col == "pos" else {})
        rows.append(row)
    frame = pd.DataFrame(rows)
    counts = [c for c in frame.columns if c.startswith("n_")]
    frame[counts] = frame[counts].fillna(0).astype(int)
    return frame
