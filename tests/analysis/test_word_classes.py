"""analysis.word_classes: UPOS of Brown's tags and of probe tokens, function vs content."""

import re

import pandas as pd
import pytest

from analysis.word_classes import EOS, brown_upos, is_twelve_tag, token_upos, word_class

FUNCTION = ["ADP", "AUX", "CCONJ", "DET", "PART", "PRON", "SCONJ"]
CONTENT = ["NOUN", "PROPN", "VERB", "ADJ", "ADV"]


@pytest.mark.parametrize("tag, upos", [
    ("MD", "AUX"), ("BEZ", "AUX"), ("BEDZ", "AUX"), ("HVD", "AUX"), ("DOD", "AUX"),
    ("*", "PART"), ("*-HL", "PART"), ("TO", "PART"),  # not, n't; infinitival to
    ("MD*", "AUX"), ("BEZ*", "AUX"), ("DOD*-TL", "AUX"),  # can't, isn't, didn't
    ("PPS+BEZ", "PRON"), ("PPSS+MD", "PRON"),  # it's, I'd: the first part
    ("AT", "DET"), ("IN", "ADP"), ("CC", "CCONJ"), ("CS", "SCONJ"), ("PP$", "PRON"),
    ("NN", "NOUN"), ("NNS$", "NOUN"), ("NP-TL", "PROPN"), ("VB", "VERB"), ("VBD-HL", "VERB"),
    ("JJ", "ADJ"), ("RB", "ADV"), ("CD", "NUM"), ("UH", "INTJ"), (".", "PUNCT"),
    ("FW-IN", "X"), ("bez", "AUX"),
])
def test_brown_upos(tag, upos):
    assert brown_upos(tag) == upos


def test_brown_upos_unknown_tag():
    with pytest.raises(ValueError, match="'QQ'"):
        brown_upos("QQ")


# Where this mapping departs from nltk's Brown -> 12-tag map, read through UD's UPOS -> 12 map
# (AUX -> VERB, PART -> PRT, ...): "not" is a particle, not an adverb; pre-quantifiers,
# existential there, nominal and possessive pronouns, particles, subordinators and
# interjections take UD's classes; contractions take their first part (nltk: PRT).
DEPARTURES = {  # base tag: (nltk's 12-tag class, UPOS here)
    "*": ("ADV", "PART"), "ABL": ("PRT", "ADV"), "ABN": ("PRT", "DET"), "EX": ("PRT", "PRON"),
    "PN": ("NOUN", "PRON"), "PN$": ("NOUN", "PRON"), "PP$": ("DET", "PRON"),
    "WP$": ("DET", "PRON"), "RP": ("PRT", "ADP"), "UH": ("PRT", "INTJ"), "CS": ("ADP", "SCONJ"),
    "AP$": ("PRT", "ADJ"), "CD$": ("NOUN", "NUM"), "JJ$": ("PRT", "ADJ"), "RB$": ("PRT", "ADV"),
}


def test_every_brown_tag_maps_and_agrees_with_the_12_tag_map(mirror):
    from data_prep.tagsets import UPOS_TO_12, read_tag_map

    twelve = read_tag_map(mirror / "nltk_data" / "taggers" / "universal_tagset" / "en-brown.map")
    assert len(twelve) > 400
    for tag, coarse in twelve.items():
        upos = brown_upos(tag)
        base = re.sub(r"(-(TL|HL|NC))+$", "", tag.split("+")[0])
        base = base if base == "*" else base.rstrip("*")
        if "+" in tag or tag.startswith("FW-") or base in DEPARTURES:
            continue
        assert UPOS_TO_12[upos] == coarse, (tag, upos, coarse)
    for base, (coarse, upos) in DEPARTURES.items():
        tag = base if base != "JJ$" else "JJ$-TL"
        assert (twelve[tag], brown_upos(tag)) == (coarse, upos), base
    # the auxiliaries the 12-tag map counts as VERB
    for tag in ("MD", "BE", "BEN", "BER", "HV", "HVZ", "DO", "DOZ"):
        assert twelve[tag] == "VERB" and brown_upos(tag) == "AUX"


def _table(upos, xpos, words, sents):
    t = pd.DataFrame(dict(upos=upos, xpos=xpos, word=words, sent_index=sents))
    t["upos_target"] = t.groupby("sent_index").upos.shift(-1).fillna(EOS)
    return t


def test_token_upos_of_brown_comes_from_xpos_aligned_like_upos_target():
    t = _table(["DET", "NOUN", "VERB", "PRT", "VERB", ".", "PRON", "CONJ"],
               ["AT", "NN", "MD", "*", "VB", ".", "PPS", "CC"],
               ["The", "dog", "can", "not", "bark", ".", "It", "and"],
               [0, 0, 0, 0, 0, 0, 1, 1])
    assert is_twelve_tag(t.upos)
    read = ["DET", "NOUN", "AUX", "PART", "VERB", "PUNCT", "PRON", "CCONJ"]
    assert list(token_upos(t, target=False)) == read
    assert list(token_upos(t, target=True)) == read[1:6] + [EOS, "CCONJ", EOS]
    classes = word_class(token_upos(t, target=False), FUNCTION, CONTENT)
    assert list(classes) == ["function", "content", "function", "function", "content", "other",
                             "function", "function"]


def test_token_upos_of_ud_is_its_upos():
    t = _table(["PRON", "AUX", "PART", "VERB", "PROPN", "PUNCT"],
               ["PRP", "MD", "RB", "VB", "NNP", "."], list("abcdef"), [0] * 6)
    assert not is_twelve_tag(t.upos)
    assert list(token_upos(t, target=False)) == list(t.upos)
    assert list(token_upos(t, target=True)) == list(t.upos_target)
    assert list(word_class(t.upos, FUNCTION, CONTENT)) == [
        "function", "function", "function", "content", "content", "other"]
    with pytest.raises(ValueError, match="both function and content"):
        word_class(t.upos, ["AUX"], ["AUX", "VERB"])
