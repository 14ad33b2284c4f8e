"""Tag sets: the Petrov et al. 12 universal tags, read from a mapping file or from UD UPOS."""

from __future__ import annotations

from pathlib import Path

from data_prep.errors import DataError

UNIVERSAL_12 = ("ADJ", "ADP", "ADV", "CONJ", "DET", "NOUN", "NUM", "PRON", "PRT", "VERB", ".", "X")

# UD's 17 UPOS onto the 12 universal tags (the conversion the UD project documents for v1 tags),
# so Brown-trained taggers and UD probes share one tag set.
UPOS_TO_12 = {
    "ADJ": "ADJ", "ADP": "ADP", "ADV": "ADV", "AUX": "VERB", "CCONJ": "CONJ", "SCONJ": "CONJ",
    "DET": "DET", "INTJ": "X", "NOUN": "NOUN", "PROPN": "NOUN", "NUM": "NUM", "PART": "PRT",
    "PRON": "PRON", "PUNCT": ".", "SYM": "X", "VERB": "VERB", "X": "X",
}

# Closed classes (function words) among the 12 tags, for function- vs content-word comparisons.
FUNCTION_TAGS = frozenset({"ADP", "CONJ", "DET", "PRON", "PRT"})


def read_tag_map(path: str | Path) -> dict[str, str]:
    """Read a `SOURCE<TAB>UNIVERSAL` mapping file (universal_tagset/*.map)."""
    mapping: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2 or not parts[0] or parts[1] not in UNIVERSAL_12:
                raise DataError(path, f"malformed mapping line {line.rstrip()!r}: expected "
                                "SOURCE<TAB>one of the 12 universal tags", lineno)
            mapping[parts[0]] = parts[1]
    return mapping
