"""The measures of NMT's training stages (Voita, Sennrich & Titov, EMNLP 2021), each a plain
function of distributions, sentences or alignments: the KL divergence from the NMT's
next-token distributions to a target-side n-gram LM's (count-based, `nltk.lm`), word-translation
accuracy against a lexicon from IBM Model 1 alignments (`nltk.translate`), how far an
alignment departs from monotone order (Kendall's tau, the fuzzy reordering score), and the
curves over training (with sentence-bootstrap resamples) that claim C5 reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

# nltk's Laplace (add-one) and interpolated Witten-Bell. Kneser-Ney is left out: nltk scores
# its lower orders by scanning every higher-order context per word, hours for a vocabulary of
# thousands at every position.
SMOOTHING = ("laplace", "witten_bell")


# ---------------------------------------------------------------------------- target-side LM

def fit_ngram_lm(sentences: Iterable[Sequence[str]], order: int, smoothing: str = "witten_bell"):
    """A count-based ``order``-gram LM of ``sentences`` (padded with <s> and </s>), from
    `nltk.lm`: add-one (``laplace``) or interpolated Witten-Bell (``witten_bell``)."""
    from nltk.lm import Laplace, WittenBellInterpolated
    from nltk.lm.preprocessing import padded_everygram_pipeline

    if smoothing not in SMOOTHING:
        raise ValueError(f"smoothing {smoothing!r} is not one of {SMOOTHING}")
    lm = Laplace(order) if smoothing == "laplace" else WittenBellInterpolated(order)
    grams, vocab = padded_everygram_pipeline(order, [list(s) for s in sentences])
    lm.fit(grams, vocab)
    return lm


@dataclass(frozen=True)
class TargetLM:
    """An nltk n-gram LM read over a fixed vocabulary (the NMT's): each vocabulary entry's
    LM word (unseen entries are the LM's <UNK>), its unigram count, and the entries of each
    LM word; the followers of each context read are kept (``counts``)."""

    lm: Any
    vocab: tuple[str, ...]
    unigram: np.ndarray
    positions: dict[str, np.ndarray]
    _seen: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def over(cls, lm, vocab: Sequence[str]) -> TargetLM:
        words = [lm.vocab.lookup(w) for w in vocab]
        unigram = np.array([lm.counts.unigrams[w] for w in words], dtype=np.float64)
        found: dict[str, list[int]] = {}
        for i, w in enumerate(words):
            found.setdefault(w, []).append(i)
        return cls(lm, tuple(vocab), unigram, {w: np.array(p) for w, p in found.items()})

    def counts(self, context: tuple[str, ...]) -> tuple[np.ndarray, float, int]:
        """(count of each vocabulary entry after ``context``, their total, distinct
        followers), from the LM's counts of the context's followers."""
        if context not in self._seen:
            fd = self.lm.counts[context]
            found = [(self.positions[w], c) for w, c in fd.items() if w in self.positions]
            idx = np.concatenate([i for i, _ in found]) if found else np.zeros(0, int)
            cnt = np.concatenate([np.full(len(i), c, float) for i, c in found]) if found \
                else np.zeros(0)
            self._seen[context] = (idx, cnt, float(fd.N()), sum(1 for c in fd.values() if c > 0))
        idx, cnt, total, n_plus = self._seen[context]
        vec = np.zeros(len(self.vocab))
        vec[idx] = cnt
        return vec, total, n_plus


def next_token_probs(t: TargetLM, context: Sequence[str]) -> np.ndarray:
    """nltk's ``lm.score(w, context)`` for every vocabulary entry w, computed from the counts
    at once (float64); the context is cut to the LM's order - 1 last words."""
    order = t.lm.order
    ctx = tuple(t.lm.vocab.lookup(w) for w in context[len(context) - (order - 1):]) \
        if order > 1 else ()
    if t.lm.__class__.__name__ == "Laplace":
        vec, total, _ = t.counts(ctx) if ctx else (t.unigram, t.lm.counts.unigrams.N(), 0)
        return (vec + 1.0) / (total + len(t.lm.vocab))
    return _witten_bell(t, ctx)


def _witten_bell(t: TargetLM, ctx: tuple[str, ...]) -> np.ndarray:
    if not ctx:
        return t.unigram / t.lm.counts.unigrams.N()
    lower = _witten_bell(t, ctx[1:])
    vec, total, n_plus = t.counts(ctx)
    if total == 0:  # an unseen context defers to the lower order (nltk: alpha 0, gamma 1)
        return lower
    gamma = n_plus / (n_plus + total)
    return (1.0 - gamma) * vec / total + gamma * lower


def kl_on_support(log_p: np.ndarray, q: np.ndarray, support: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """KL(P || Q) per row with both renormalised over ``support`` (the entries the n-gram LM
    gives mass: pieces seen on the target side), and P's mass outside it."""
    lp = log_p[:, support].astype(np.float64)
    p = np.exp(lp)
    inside = p.sum(-1, keepdims=True)
    q = q[:, support]
    lq = np.log(q) - np.log(q.sum(-1, keepdims=True))
    kl = np.sum(p * (lp - np.log(inside) - lq), axis=-1) / inside[:, 0]
    return kl, 1.0 - inside[:, 0]


# ---------------------------------------------------------------------------- lexical translation

def words(text: str) -> list[str]:
    """The lowercased runs of letters and digits of a sentence (punctuation dropped: a '.'
    translated as '.' says nothing of lexical translation)."""
    return re.findall(r"\w+", text.lower())


def ibm1_model(pairs: Iterable[tuple[Sequence[str], Sequence[str]]], iterations: int = 5):
    """IBM Model 1 (`nltk.translate`) of P(target word | source word), trained on (source,
    target) sentence pairs."""
    from nltk.translate import AlignedSent, IBMModel1

    return IBMModel1([AlignedSent(list(t), list(s)) for s, t in pairs], iterations)


def ibm1_lexicon(model) -> dict[str, str]:
    """{source word: its most probable translation} of an IBM Model 1; of equally probable
    translations the first in sorted order (the table's own order follows Python's string
    hashing, which differs between processes)."""
    best: dict[str, tuple[float, str]] = {}
    for target, row in model.translation_table.items():
        if target is None:
            continue
        for source, prob in row.items():
            if source is None or prob <= 0:
                continue
            have = best.get(source)
            if have is None or prob > have[0] or (prob == have[0] and target < have[1]):
                best[source] = (prob, target)
    return {s: t for s, (_, t) in sorted(best.items())}


def lexical_hits(source: Sequence[str], output: Sequence[str], lexicon: Mapping[str, str]
                 ) -> tuple[int, int]:
    """(source words with a lexicon entry whose translation is in the output, source words
    with an entry), each occurrence counted."""
    present = set(output)
    found = [lexicon[s] in present for s in source if s in lexicon]
    return sum(found), len(found)


def ibm1_alignment(model, source: Sequence[str], target: Sequence[str]) -> list[tuple[int, int]]:
    """(source position, target position) links of IBM Model 1's best alignment of a pair,
    each target word to its likeliest source word (links to NULL dropped)."""
    from nltk.translate import AlignedSent

    pair = AlignedSent(list(target), list(source))
    model.align(pair)
    return [(i, j) for j, i in pair.alignment if i is not None]


# ---------------------------------------------------------------------------- reordering

def kendall_tau(alignment: Iterable[tuple[int, int]]) -> float:
    """Kendall's tau between the source and target positions of aligned (source, target)
    pairs: 1 for monotone order, -1 for reversed; NaN with fewer than two pairs or no
    variation on a side."""
    pairs = sorted(set(alignment))
    if len(pairs) < 2:
        return float("nan")
    source, target = zip(*pairs, strict=True)
    if len(set(source)) < 2 or len(set(target)) < 2:
        return float("nan")
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


# ---------------------------------------------------------------------------- curves

def orders(sentences: pd.DataFrame) -> list[int]:
    """The n-gram orders a per-sentence table has KL sums for."""
    return sorted(int(c.rsplit("_", 1)[1]) for c in sentences if c.startswith("kl_sum_"))


def curves(sentences: pd.DataFrame, checkpoints: pd.DataFrame,
           weights: np.ndarray | None = None) -> pd.DataFrame:
    """One set's curves per step: ``kl_<order>``, the KL to each n-gram LM (mean over target
    positions), ``lexical_accuracy`` (hits over source words with an entry) and
    ``reordering`` (the mean Kendall-tau distance (1 - tau) / 2 over sentences with a tau),
    from its per-sentence table; ``bleu`` from its per-checkpoint one. ``weights``: each
    sentence's multiplicity (a bootstrap resample)."""
    s = sentences.sort_values(["step", "sentence"])
    n_sent = s.sentence.nunique()
    w = np.ones(n_sent) if weights is None else np.asarray(weights, dtype=float)
    steps = np.sort(s.step.unique())

    def grid(column: str) -> np.ndarray:
        return s[column].to_numpy(dtype=float).reshape(len(steps), n_sent)

    positions, tau = grid("positions") @ w, grid("tau")
    has_tau = np.isfinite(tau)
    distance = np.where(has_tau, (1 - np.nan_to_num(tau)) / 2, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {f"kl_{k}": (grid(f"kl_sum_{k}") @ w) / positions for k in orders(s)}
        out["lexical_accuracy"] = (grid("lexical_hits") @ w) / (grid("lexical_total") @ w)
        out["reordering"] = (distance @ w) / (has_tau @ w)
    out["bleu"] = checkpoints.set_index("step").bleu.reindex(steps).to_numpy(dtype=float)
    return pd.DataFrame([dict(step=int(st), measure=m, value=float(v[i]))
                         for m, v in out.items() for i, st in enumerate(steps)])


def unit_curves(sentences: pd.DataFrame, checkpoints: pd.DataFrame, reference: pd.DataFrame,
                resamples: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A translate unit's curves per set (with the references' own reordering in
    ``reference`` and the set's sentence count), and the same curves on ``resamples``
    bootstrap resamples of each set's sentences (the same sentences at every step; BLEU is
    not resampled)."""
    rng = np.random.default_rng(seed)
    found, resampled = [], []
    for name, s in sentences.groupby("set", sort=True):
        ck = checkpoints[checkpoints.set == name]
        ref = reference[reference.set == name]
        c = curves(s, ck)
        tau = ref.tau.to_numpy(dtype=float)
        c["reference"] = np.where(c.measure == "reordering",
                                  np.nanmean((1 - tau) / 2) if np.isfinite(tau).any()
                                  else np.nan, np.nan)
        n = s.sentence.nunique()
        found.append(c.assign(set=name, sentences=n))
        for r in range(1, resamples + 1):
            w = np.bincount(rng.integers(0, n, n), minlength=n)
            rc = curves(s, ck.assign(bleu=np.nan), w)
            resampled.append(rc[rc.measure != "bleu"].assign(set=name, resample=r))
    empty = pd.DataFrame(columns=["step", "measure", "value", "set", "resample"])
    return (pd.concat(found, ignore_index=True) if found else pd.DataFrame(),
            pd.concat(resampled, ignore_index=True) if resampled else empty)


__all__ = ["SMOOTHING", "TargetLM", "curves", "fit_ngram_lm", "fuzzy_reordering_score",
           "ibm1_alignment", "ibm1_lexicon", "ibm1_model", "kendall_tau", "kl_on_support",
           "lexical_hits", "next_token_probs", "orders",
           "unit_curves", "words"]
