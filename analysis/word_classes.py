"""Universal POS (UPOS, UD's 17 tags) of every probe token, for the function- vs content-word
split of claim C4.

UD probes carry UPOS in ``upos``/``upos_target``. Brown has no UPOS: data_prep fills ``upos``
with its 12-tag mapping, which sends auxiliaries, modals and be/have/do to VERB and "not" to
ADV; here Brown's original tags (``xpos``) are mapped to UPOS instead, with :data:`BROWN_UPOS`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

EOS = "</s>"  # the tag target-aligned columns give the last token (it predicts end of sentence)

# Tags of the 12-tag universal set that UD's UPOS lacks: a `upos` column holding any of them
# is data_prep's 12-tag fallback (Brown), not UPOS.
TWELVE_ONLY = frozenset({"CONJ", "PRT", "."})

# Brown tag (without -TL/-HL/-NC, FW- and the second part of a contraction) -> UPOS, following
# UD English EWT's guidelines. Brown does not tell auxiliary from main-verb have/do: every
# form of be, have and do is AUX (UD tags main-verb have/do VERB, so Brown's AUX is a little
# wider than EWT's); "not"/"n't" (*) is PART; phrasal-verb particles (RP) are ADP as in EWT.
BROWN_UPOS: dict[str, str] = {
    # punctuation; "*" is the negator not / n't
    ".": "PUNCT", ",": "PUNCT", ":": "PUNCT", "--": "PUNCT", "(": "PUNCT", ")": "PUNCT",
    "``": "PUNCT", "''": "PUNCT", "'": "PUNCT", "*": "PART",
    # auxiliaries: modals and every form of be, have, do
    "MD": "AUX",
    "BE": "AUX", "BED": "AUX", "BEDZ": "AUX", "BEG": "AUX", "BEM": "AUX", "BEN": "AUX",
    "BER": "AUX", "BEZ": "AUX",
    "HV": "AUX", "HVD": "AUX", "HVG": "AUX", "HVN": "AUX", "HVZ": "AUX",
    "DO": "AUX", "DOD": "AUX", "DOZ": "AUX",
    # determiners: articles, pre-quantifiers (all, half, both), this/these/any/either, which
    "AT": "DET", "ABN": "DET", "ABX": "DET", "DT": "DET", "DTI": "DET", "DTS": "DET",
    "DTX": "DET", "WDT": "DET",
    # pronouns: personal, possessive, reflexive, nominal (everybody), wh-, existential there
    "PN": "PRON", "PP$": "PRON", "PP$$": "PRON", "PPL": "PRON", "PPLS": "PRON", "PPO": "PRON",
    "PPS": "PRON", "PPSS": "PRON", "WP$": "PRON", "WPO": "PRON", "WPS": "PRON", "EX": "PRON",
    # adpositions, conjunctions, particles
    "IN": "ADP", "RP": "ADP", "CC": "CCONJ", "CS": "SCONJ", "TO": "PART",
    # open classes
    "NN": "NOUN", "NNS": "NOUN", "NR": "NOUN", "NRS": "NOUN", "NP": "PROPN", "NPS": "PROPN",
    "VB": "VERB", "VBD": "VERB", "VBG": "VERB", "VBN": "VERB", "VBZ": "VERB",
    "JJ": "ADJ", "JJR": "ADJ", "JJS": "ADJ", "JJT": "ADJ", "AP": "ADJ", "OD": "ADJ",
    "RB": "ADV", "RBR": "ADV", "RBT": "ADV", "RN": "ADV", "QL": "ADV", "QLP": "ADV",
    "ABL": "ADV", "WQL": "ADV", "WRB": "ADV",
    "CD": "NUM", "UH": "INTJ", "NIL": "X",
}

_SUFFIXES = re.compile(r"(?:-(?:TL|HL|NC))+$")  # title, headline, cited word


def brown_upos(tag: str) -> str:
    """UPOS of one Brown tag: foreign words (FW-) are X; a contraction (PPS+BEZ, it's) takes
    its first part; -TL/-HL/-NC, a negation * (BEZ*, isn't) and a possessive $ are dropped."""
    t = str(tag).upper()
    if t.startswith("FW-"):
        return "X"
    t = _SUFFIXES.sub("", t.split("+")[0])
    if t != "*":
        t = t.rstrip("*")
    if t not in BROWN_UPOS and t.endswith("$"):
        t = t[:-1]
    if t not in BROWN_UPOS:
        raise ValueError(f"Brown tag {tag!r} has no UPOS in analysis.word_classes.BROWN_UPOS")
    return BROWN_UPOS[t]


def is_twelve_tag(upos: Iterable) -> bool:
    """Whether a ``upos`` column holds data_prep's 12-tag fallback rather than UD UPOS."""
    return not TWELVE_ONLY.isdisjoint(pd.unique(pd.Series(list(upos), dtype=object)))


def token_upos(tokens: pd.DataFrame, target: bool) -> pd.Series:
    """UPOS of the token read (``target=False``) or predicted (``target=True``, the next
    token of the sentence; the last one gets ``</s>``), per row of a probe's token table.

    ``upos``/``upos_target`` where they hold UPOS, else Brown's ``xpos`` mapped with
    :func:`brown_upos` (and aligned like data_prep aligns ``upos_target``).
    """
    column = "upos_target" if target else "upos"
    if not is_twelve_tag(pd.concat([tokens["upos"], tokens["upos_target"]])):
        return tokens[column].astype(object).where(tokens[column].notna(), EOS if target
                                                   else "X")
    if tokens["xpos"].isna().any():
        raise ValueError("upos holds 12-tag labels and xpos is missing: no UPOS to be had")
    codes, tags = pd.factorize(tokens["xpos"].astype(str))
    upos = pd.Series(np.asarray([brown_upos(t) for t in tags], dtype=object)[codes],
                     index=tokens.index, dtype=object)
    if target:
        upos = upos.groupby(tokens["sent_index"], sort=False).shift(-1).fillna(EOS)
    return upos


def word_class(upos: Iterable, function: Iterable[str], content: Iterable[str]) -> np.ndarray:
    """"function", "content" or "other" per token, from its UPOS tag."""
    u = pd.Series(list(upos), dtype=object)
    function, content = set(function), set(content)
    if function & content:
        raise ValueError(f"tags both function and content: {sorted(function & content)}")
    return np.where(u.isin(function), "function", np.where(u.isin(content), "content", "other"))


__all__ = ["BROWN_UPOS", "EOS", "brown_upos", "is_twelve_tag", "token_upos", "word_class"]
