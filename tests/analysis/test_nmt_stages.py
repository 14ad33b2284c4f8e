"""The NMT-stage measures against cases computed by hand: a KL divergence, an n-gram LM's
add-one probabilities, a lexicon learnt from a toy corpus, and alignments whose Kendall's tau
and fuzzy reordering score are known."""

import math

import numpy as np
import pytest

from analysis import nmt_stages as ns


def test_an_add_one_bigram_lm_gives_the_counts_by_hand():
    """Two sentences 'a b', 'a c': after 'a', b and c were seen once each out of 2; add-one
    over the vocabulary {a, b, c, </s>, <s>, <UNK>} (6 entries) gives 2/8 for b, 1/8 for a."""
    lm = ns.fit_ngram_lm([["a", "b"], ["a", "c"]], order=2, smoothing="laplace")
    t = ns.TargetLM.over(lm, ["a", "b", "c", "</s>"])
    np.testing.assert_allclose(ns.next_token_probs(t, ["a"]), np.array([1, 2, 2, 1]) / 8,
                               rtol=1e-12)
    with pytest.raises(ValueError, match="smoothing 'kneser_ney' is not one of"):
        ns.fit_ngram_lm([["a"]], 2, "kneser_ney")


CORPUS = [s.split() for s in ("a b c a", "b c a b", "a a b", "c b a c b", "b b c")]


@pytest.mark.parametrize("smoothing", ns.SMOOTHING)
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("context", [[], ["a"], ["b", "c"], ["c", "c"], ["<s>", "<s>"],
                                     ["z", "a"]])
def test_the_vectorised_scores_are_nltks_own(smoothing, order, context):
    """next_token_probs equals nltk's lm.score, for seen and unseen contexts (longer ones
    cut to the order) and an entry ('z') the LM never saw."""
    vocab = ["a", "b", "c", "</s>", "z"]
    reference = ns.fit_ngram_lm(CORPUS, order, smoothing)
    ctx = context[len(context) - (order - 1):] if order > 1 else []
    expected = np.array([reference.score(w, ctx) for w in vocab])
    got = ns.next_token_probs(ns.TargetLM.over(reference, vocab), context)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


def test_kl_on_the_support_renormalises_both_and_reports_the_mass_outside():
    log_p = np.log(np.array([[0.4, 0.4, 0.2]]))
    q = np.array([[0.25, 0.75, 0.0]])
    kl, outside = ns.kl_on_support(log_p, q, np.array([True, True, False]))
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl[0] == pytest.approx(expected, abs=1e-12)
    assert outside[0] == pytest.approx(0.2, abs=1e-12)


def test_a_lexicon_from_a_toy_corpus_and_the_accuracy_of_outputs():
    pairs = [(["the", "house"], ["das", "haus"]), (["the", "book"], ["das", "buch"]),
             (["a", "book"], ["ein", "buch"]), (["the", "house", "is", "small"],
                                                 ["das", "haus", "ist", "klein"]),
             (["the", "book", "is", "small"], ["das", "buch", "ist", "klein"])]
    model = ns.ibm1_model(pairs, iterations=10)
    lexicon = ns.ibm1_lexicon(model)
    assert {lexicon[w] for w in ("house", "book", "the")} == {"haus", "buch", "das"}
    toy = {"the": "das", "house": "haus", "book": "buch"}
    assert ns.lexical_hits(["the", "house"], ["das", "haus"], toy) == (2, 2)
    assert ns.lexical_hits(["a", "book"], ["ein", "auto"], toy) == (0, 1)  # 'a': no entry
    assert ns.lexical_hits(["x"], ["y"], {}) == (0, 0)
    # the model aligns a reordered pair: 'buch das' for 'the book' crosses
    links = ns.ibm1_alignment(model, ["the", "book"], ["buch", "das"])
    assert sorted(links) == [(0, 1), (1, 0)]
    assert ns.kendall_tau(links) == -1.0
    assert ns.words("Ein Mann, der's sieht.") == ["ein", "mann", "der", "s", "sieht"]


@pytest.mark.parametrize("alignment, tau, fuzzy", [
    ([(0, 0), (1, 1), (2, 2), (3, 3)], 1.0, 1.0),           # monotone
    ([(0, 3), (1, 2), (2, 1), (3, 0)], -1.0, 0.0),          # reversed: 4 chunks
    ([(0, 1), (1, 0), (2, 2), (3, 3)], 4 / 6, 1 - 2 / 3),   # one swap: 5 of 6 pairs concordant
    ([(0, 2), (1, 3), (2, 0), (3, 1)], -2 / 6, 1 - 1 / 3),  # two blocks swapped: 2 chunks
])
def test_reordering_of_known_alignments(alignment, tau, fuzzy):
    assert ns.kendall_tau(alignment) == pytest.approx(tau, abs=1e-12)
    assert ns.fuzzy_reordering_score(alignment) == pytest.approx(fuzzy, abs=1e-12)


def test_curves_pool_sentences_by_their_counts_and_weights():
    """Two sentences at two steps: KL is summed over positions then divided by all positions,
    lexical accuracy is hits over entries, reordering the mean (1 - tau) / 2 of the
    sentences with a tau; bootstrap weights count a sentence that many times."""
    import pandas as pd

    s = pd.DataFrame(dict(step=[0, 0, 10, 10], sentence=[0, 1, 0, 1], positions=[2, 6] * 2,
                          kl_sum_2=[4.0, 6.0, 1.0, 3.0], lexical_hits=[0, 1, 2, 3],
                          lexical_total=[2, 4] * 2, tau=[np.nan, 0.5, 1.0, -1.0]))
    ck = pd.DataFrame(dict(step=[0, 10], bleu=[0.0, 5.0]))
    c = ns.curves(s, ck).set_index(["measure", "step"]).value
    assert c["kl_2", 0] == pytest.approx(10 / 8) and c["kl_2", 10] == pytest.approx(4 / 8)
    assert c["lexical_accuracy", 10] == pytest.approx(5 / 6)
    assert c["reordering", 0] == pytest.approx(0.25) and c["reordering", 10] == 0.5
    assert c["bleu", 10] == 5.0
    w = ns.curves(s, ck, weights=np.array([0, 2])).set_index(["measure", "step"]).value
    assert w["kl_2", 0] == pytest.approx(12 / 12) and w["reordering", 10] == 1.0


def test_the_lexicon_breaks_ties_by_the_word_whatever_the_table_order():
    """Equally probable translations: the first in sorted order, in every table order (the
    order of nltk's table follows string hashing, which differs between processes)."""
    from types import SimpleNamespace

    rows = {"haus": {"house": 0.4, "home": 0.1}, "heim": {"house": 0.4, "home": 0.6},
            "das": {"the": 0.9, "house": 0.0}, None: {"house": 0.5}}
    expected = {"house": "haus", "home": "heim", "the": "das"}
    for order in (list(rows), list(rows)[::-1]):
        table = {t: dict(reversed(list(rows[t].items()))) for t in order}
        assert ns.ibm1_lexicon(SimpleNamespace(translation_table=table)) == expected
