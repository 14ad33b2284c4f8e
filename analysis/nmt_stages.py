"""The measures of NMT's training stages (Voita, Sennrich & Titov, EMNLP 2021), each a plain
function of distributions, sentences or alignments: the KL divergence from the NMT's
next-token distributions to a target-side n-gram LM's (count-based, `nltk.lm`), word-translation
accuracy against a lexicon from IBM Model 1 alignments (`nltk.translate`), and how far an
alignment departs from monotone order (Kendall's tau, the fuzzy reordering score).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from scipy import stats

SMOOTHING = ("laplace", "kneser_ney")


# ---------------------------------------------------------------------------- target-side LM

def fit_ngram_lm(sentences: Iterable[Sequence[str]], order: int, smoothing: str = "laplace"):
    """A count-based ``order``-gram LM of ``sentences`` (padded with <s> and </s>), from
    `nltk.lm`: add-one (``laplace``) or interpolated Kneser-Ney (``kneser_ney``)."""
    from nltk.lm import KneserNeyInterpolated, Laplace
    from nltk.lm.preprocessing import padded_everygram_pipeline

    if smoothing not in SMOOTHING:
        raise ValueError(f"smoothing {smoothing!r} is not one of {SMOOTHING}")
    lm = Laplace(order) if smoothing == "laplace" else KneserNeyInterpolated(order)
    grams, vocab = padded_everygram_pipeline(order, [list(s) for s in sentences])
    lm.fit(grams, vocab)
    return lm


def ngram_log_probs(lm, sentence: Sequence[str], vocab: Sequence[str]) -> np.ndarray:
    """[len(sentence) + 1, len(vocab)] natural-log probabilities of every ``vocab`` entry as
    the next token after each prefix of ``sentence`` (the last row: after the whole sentence),
    renormalised over ``vocab`` (the entries the NMT's distribution has)."""
    padded = ["<s>"] * (lm.order - 1) + list(sentence)
    rows = []
    for t in range(len(sentence) + 1):
        context = padded[t: t + lm.order - 1]
        p = np.array([lm.score(w, context) for w in vocab], dtype=np.float64)
        rows.append(np.log(p / p.sum()))
    return np.array(rows)


def kl_divergence(log_p: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    """KL(P || Q) per row of two [n, V] natural-log distributions (nats)."""
    p = np.exp(log_p)
    return np.sum(p * (log_p - log_q), axis=-1)


# ---------------------------------------------------------------------------- lexical translation

def ibm1_lexicon(pairs: Iterable[tuple[Sequence[str], Sequence[str]]], iterations: int = 5,
                 min_prob: float = 0.0) -> dict[str, str]:
    """{source word: its most probable translation} from IBM Model 1 (`nltk.translate`)
    trained on (source, target) sentence pairs; words whose best P(target | source) is below
    ``min_prob`` are left out."""
    from nltk.translate import AlignedSent, IBMModel1

    bitext = [AlignedSent(list(t), list(s)) for s, t in pairs]
    table = IBMModel1(bitext, iterations).translation_table  # table[target][source]
    best: dict[str, tuple[float, str]] = {}
    for target, row in table.items():
        if target is None:
            continue
        for source, prob in row.items():
            if source is not None and prob > best.get(source, (min_prob, ""))[0]:
                best[source] = (prob, target)
    return {s: t for s, (_, t) in best.items()}


def lexical_accuracy(sources: Sequence[Sequence[str]], outputs: Sequence[Sequence[str]],
                     lexicon: Mapping[str, str]) -> float:
    """The share of source words with a lexicon entry whose translation is in the output
    sentence (each occurrence counted; NaN when no source word has an entry)."""
    hits = total = 0
    for source, output in zip(sources, outputs, strict=True):
        words = set(output)
        for s in source:
            if s in lexicon:
                total += 1
                hits += lexicon[s] in words
    return hits / total if total else float("nan")


# ---------------------------------------------------------------------------- reordering

def kendall_tau(alignment: Iterable[tuple[int, int]]) -> float:
    """Kendall's tau between the source and target positions of aligned (source, target)
    pairs: 1 for monotone order, -1 for reversed; NaN with fewer than two pairs."""
    pairs = sorted(set(alignment))
    if len(pairs) < 2:
        return float("nan")
    source, target = zip(*pairs, strict=True)
    return float(stats.kendalltau(source, target).statistic)


def fuzzy_reordering_score(alignment: Iterable[tuple[int, int]]) -> float:
    """Talbot et al.'s fuzzy reordering score: 1 - (chunks - 1) / (words - 1), where the
    source words, in target order (one target position each), break into ``chunks`` runs of
    consecutive, increasing source positions; 1 is monotone. NaN below two aligned words."""
    first: dict[int, int] = {}
    for s, t in sorted(set(alignment), key=lambda p: (p[1], p[0])):
        first.setdefault(s, t)  # each source word at its first aligned target position
    order = [s for s, _ in sorted(first.items(), key=lambda p: (p[1], p[0]))]
    if len(order) < 2:
        return float("nan")
    chunks = 1 + sum(b != a + 1 for a, b in zip(order, order[1:], strict=False))
    return 1 - (chunks - 1) / (len(order) - 1)
