"""analysis.word_alignment: IBM Model 1 (the fallback) and eflomal align toy pairs whose links
are known, and the fuzzy reordering score reads their order."""

import pytest

from analysis import nmt_stages as ns
from analysis import word_alignment as wa

TOY = [(["the", "house"], ["das", "haus"]), (["the", "book"], ["das", "buch"]),
       (["a", "book"], ["ein", "buch"]), (["the", "house", "is", "small"],
                                          ["das", "haus", "ist", "klein"]),
       (["the", "book", "is", "small"], ["das", "buch", "ist", "klein"])]


def test_ibm1_aligns_a_reordered_pair_across():
    aligner = wa.fit_aligner(TOY, "ibm1", ibm1_iterations=10)
    assert aligner.name == "ibm1"
    links, empty = wa.align(aligner, [(["the", "book"], ["buch", "das"]), (["the"], [])])
    assert sorted(links) == [(0, 1), (1, 0)] and empty == []
    assert ns.kendall_tau(links) == -1.0 and ns.fuzzy_reordering_score(links) == 0.0
    with pytest.raises(ValueError, match="aligner 'giza' is not one of"):
        wa.fit_aligner(TOY, "giza")


def test_eflomal_with_priors_from_a_bitext_aligns_monotone_and_reversed_outputs():
    """Priors from a bitext of one-to-one word pairs, the German words in every order (so the
    jumps' prior favours none): a monotone output aligns word for word (score 1), the same
    words reversed align across (score 0)."""
    from itertools import permutations

    pytest.importorskip("eflomal")
    en = "man woman dog cat house car tree ball sees has likes".split()
    de = "mann frau hund katze haus auto baum ball sieht hat mag".split()
    bitext = [([en[w] for w in words], [de[w] for w in order])
              for i in range(8) for j in range(1, 8)
              for words in [(i, 8 + j % 3, (i + j) % 8)] for order in permutations(words)]
    aligner = wa.fit_aligner(bitext, "eflomal", samplers=3)
    assert aligner.name == "eflomal" and aligner.priors
    pairs = [(["dog", "sees", "cat"], ["hund", "sieht", "katze"]),
             (["dog", "sees", "cat"], ["katze", "sieht", "hund"]), (["dog"], [])]
    straight, reversed_, empty = wa.align(aligner, pairs)
    assert straight == [(0, 0), (1, 1), (2, 2)] and empty == []
    assert reversed_ == [(0, 2), (1, 1), (2, 0)]
    assert ns.fuzzy_reordering_score(straight) == 1.0
    assert ns.fuzzy_reordering_score(reversed_) == 0.0
