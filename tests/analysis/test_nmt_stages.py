"""The NMT-stage measures against cases computed by hand: a KL divergence, an n-gram LM's
add-one probabilities and the LM score of a sequence, teacher-forced token accuracy and
frequency buckets, and alignments whose Kendall's tau and fuzzy reordering score are known."""

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


def test_the_lm_score_of_a_sequence_by_hand():
    """Add-one bigram LM of 'a b', 'a c' (6 vocabulary entries with <s>, <UNK>), renormalised
    over the support {a, b, c, </s>}: P(a | <s>) = (3/8) / (6/8), P(b | a) = (2/8) / (6/8),
    P(</s> | b) = (2/7) / (5/7). A piece outside the vocabulary is not scored, and the next
    context (<UNK>, unseen) is uniform over the support."""
    lm = ns.fit_ngram_lm([["a", "b"], ["a", "c"]], order=2, smoothing="laplace")
    vocab = ["a", "b", "c", "</s>"]
    t = ns.TargetLM.over(lm, vocab)
    index = {w: i for i, w in enumerate(vocab)}
    support = np.ones(4, bool)
    total, scored, outside = ns.sequence_logprob(t, ["a", "b"], index, support)
    assert total == pytest.approx(math.log(1 / 2) + math.log(1 / 3) + math.log(2 / 5), abs=1e-12)
    assert (scored, outside) == (3, 0)
    total, scored, outside = ns.sequence_logprob(t, ["a", "z"], index, support)
    assert total == pytest.approx(math.log(1 / 2) + math.log(1 / 4), abs=1e-12)
    assert (scored, outside) == (2, 1)


def test_token_accuracy_and_frequency_buckets():
    log_p = np.log(np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2], [0.2, 0.6, 0.2],
                             [0.1, 0.1, 0.8]]))  # the last row: </s> after the reference
    assert ns.teacher_forced_hits(log_p, [2, 1, 1]).tolist() == [True, False, True]
    assert ns.frequency_ranks({"a": 5, "b": 3, "c": 3, "d": 1}) == {"a": 1, "b": 2, "c": 2,
                                                                   "d": 4}
    assert ns.bucket_labels([10, 100]) == ["1-10", "11-100", ">100"]
    ranks = np.array([1, 10, 11, 100, 101, np.nan])  # unseen pieces: the last bucket
    assert ns.bucket_of(ranks, [10, 100]).tolist() == [0, 0, 1, 1, 2, 2]
    assert ns.words("Ein Mann, der's sieht.") == ["ein", "mann", "der", "s", "sieht"]


def talbot(chunks: int, words: int) -> float:
    """Talbot et al.'s fuzzy reordering score, 1 - (C - 1) / (M - 1): C chunks of M words,
    the sentence-start and -end markers counted among the words."""
    return 1 - (chunks - 1) / (words - 1)


@pytest.mark.parametrize("alignment, tau, fuzzy", [
    # identity, 4 words: one chunk <s> 0 1 2 3 </s> of 6
    ([(0, 0), (1, 1), (2, 2), (3, 3)], 1.0, talbot(1, 6)),
    # full reversal: <s> | 3 | 2 | 1 | 0 | </s>, every word its own chunk
    ([(0, 3), (1, 2), (2, 1), (3, 0)], -1.0, talbot(6, 6)),
    # one adjacent swap at the start, target order 1 0 2 3: <s> | 1 | 0 | 2 3 </s>
    ([(0, 1), (1, 0), (2, 2), (3, 3)], 4 / 6, talbot(4, 6)),
    # two blocks swapped, 2 3 0 1: <s> | 2 3 | 0 1 | </s>
    ([(0, 2), (1, 3), (2, 0), (3, 1)], -2 / 6, talbot(4, 6)),
    # one adjacent swap inside 5 words, 0 1 3 2 4: <s> 0 1 | 3 | 2 | 4 </s> of 7
    ([(0, 0), (1, 1), (2, 3), (3, 2), (4, 4)], 8 / 10, talbot(4, 7)),
])
def test_reordering_of_known_alignments(alignment, tau, fuzzy):
    assert ns.kendall_tau(alignment) == pytest.approx(tau, abs=1e-12)
    assert ns.fuzzy_reordering_score(alignment) == pytest.approx(fuzzy, abs=1e-12)
    # the values of the formula, written out: 1, 0, 0.4, 0.4, 0.5
    assert [talbot(1, 6), talbot(6, 6), talbot(4, 6), talbot(4, 7)] == \
        pytest.approx([1.0, 0.0, 0.4, 0.5])


def test_the_fuzzy_score_counts_aligned_words_once_and_skips_unaligned_ones():
    assert ns.fuzzy_reordering_score([(0, 0), (2, 1), (5, 2)]) == 1.0  # 1, 3, 4 unaligned
    assert ns.fuzzy_reordering_score([(0, 0), (1, 0), (2, 1)]) == 1.0  # two words to one
    assert ns.fuzzy_reordering_score([(0, 2), (0, 0), (1, 1)]) == 1.0  # first position counts
    assert math.isnan(ns.fuzzy_reordering_score([(0, 0)]))
    assert math.isnan(ns.fuzzy_reordering_score([]))


def test_curves_pool_sentences_by_their_counts_and_weights():
    """Two sentences at two steps: KL and the LM score are summed over positions then divided
    by all positions, token accuracy is hits over pieces (per frequency bucket too), the
    reordering scores the mean of the sentences with one; bootstrap weights count a sentence
    that many times."""
    import pandas as pd

    s = pd.DataFrame(dict(step=[0, 0, 10, 10], sentence=[0, 1, 0, 1], positions=[2, 6] * 2,
                          kl_sum_2=[4.0, 6.0, 1.0, 3.0], lm_logprob_2=[-8.0, -4.0, -2.0, -6.0],
                          lm_pieces=[2, 2, 4, 4], tau=[np.nan, 0.5, 1.0, -1.0],
                          fuzzy=[np.nan, 0.4, 1.0, 0.0]))
    ck = pd.DataFrame(dict(step=[0, 10], bleu=[0.0, 5.0]))
    tokens = pd.DataFrame(dict(step=[0, 0, 0, 10, 10, 10], sentence=[0, 1, 1, 0, 1, 1],
                               hit=[True, False, False, True, True, False],
                               train_rank=[1, 5, np.nan, 1, 5, np.nan]))
    c = ns.curves(s, ck, tokens, [1]).set_index(["measure", "step"]).value
    assert c["kl_2", 0] == pytest.approx(10 / 8) and c["kl_2", 10] == pytest.approx(4 / 8)
    assert c["lm_2", 0] == pytest.approx(-12 / 4) and c["lm_2", 10] == pytest.approx(-8 / 8)
    assert c["token_accuracy", 0] == pytest.approx(1 / 3)
    assert c["token_accuracy", 10] == pytest.approx(2 / 3)
    assert c["token_accuracy[1-1]", 0] == 1.0 and c["token_accuracy[>1]", 10] == 0.5
    assert c["fuzzy_reordering", 0] == pytest.approx(0.4) and c["fuzzy_reordering", 10] == 0.5
    assert c["kendall_tau", 0] == 0.5 and c["reordering", 0] == pytest.approx(0.25)
    assert c["bleu", 10] == 5.0
    w = ns.curves(s, ck, tokens, [1], weights=np.array([0, 2])).set_index(
        ["measure", "step"]).value
    assert w["kl_2", 0] == pytest.approx(12 / 12) and w["fuzzy_reordering", 10] == 0.0
    assert w["token_accuracy", 10] == pytest.approx(0.5)
    ref = pd.DataFrame(dict(set="x", sentence=[0, 1], lm_logprob_2=[-3.0, -5.0],
                            lm_pieces=[2, 2], fuzzy=[0.5, np.nan], tau=[0.0, 1.0]))
    assert ns.reference_values(ref) == pytest.approx(
        {"lm_2": -2.0, "fuzzy_reordering": 0.5, "kendall_tau": 0.5, "reordering": 0.25})


