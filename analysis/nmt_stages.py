"""The measures of NMT's training stages (Voita, Sennrich & Titov, EMNLP 2021), each a plain
function of distributions, sentences or alignments: the score of the NMT's translations under
target-side n-gram LMs (count-based, `nltk.lm`), teacher-forced token accuracy by the pieces'
training frequency, how far a word alignment departs from monotone order (the fuzzy reordering
score, Kendall's tau), the teacher-forced KL divergence to the n-gram LMs (Chang & Bergen's
reading), and the curves over training that claim C5 reads (analysis.claims.c5).
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


def sequence_logprob(t: TargetLM, pieces: Sequence[str], index: Mapping[str, int],
                     support: np.ndarray) -> tuple[float, int, int]:
    """The n-gram LM's log-probability (nats) of a piece sequence and its </s> (Voita et al.'s
    target-side LM score of a translation), each next-piece distribution renormalised over
    ``support`` as in :func:`kl_on_support`; ``index``: each piece's vocabulary entry.
    Returns (sum over the pieces scored, pieces scored, pieces outside the support, unscored)."""
    sequence = [*pieces, "</s>"]
    history = ("<s>",) * max(t.lm.order - 1, 0)
    total, scored, outside = 0.0, 0, 0
    for j, piece in enumerate(sequence):
        i = index.get(piece)
        if i is None or not support[i]:
            outside += 1
            continue
        q = next_token_probs(t, history + tuple(sequence[:j]))
        total += float(np.log(q[i]) - np.log(q[support].sum()))
        scored += 1
    return total, scored, outside


# ---------------------------------------------------------------------------- lexical translation

def words(text: str) -> list[str]:
    """The lowercased runs of letters and digits of a sentence (punctuation dropped: a '.'
    translated as '.' says nothing of lexical translation)."""
    return re.findall(r"\w+", text.lower())


def teacher_forced_hits(log_p: np.ndarray, target_ids: Sequence[int]) -> np.ndarray:
    """Per reference piece, whether it is the model's most probable next piece given the
    reference prefix (teacher-forced token accuracy); rows of ``log_p`` past the pieces
    (</s>'s) are left out."""
    ids = np.asarray(target_ids, dtype=int)
    return np.asarray(log_p)[: len(ids)].argmax(-1) == ids


def frequency_ranks(counts: Mapping[str, int]) -> dict[str, int]:
    """Each piece's rank by training frequency, 1 the most frequent; tied counts share the
    best rank of the tie (competition ranking)."""
    values = np.array(sorted(counts.values(), reverse=True))
    return {w: int(np.searchsorted(-values, -c, side="left")) + 1 for w, c in counts.items()}


def bucket_labels(edges: Sequence[int]) -> list[str]:
    """The frequency buckets' names for rank ``edges`` [e1, e2, ...]: '1-e1', 'e1+1-e2', ...,
    and '>e_last' (which holds pieces unseen in training too)."""
    bounds = [0, *edges]
    return [f"{lo + 1}-{hi}" for lo, hi in zip(bounds, bounds[1:], strict=False)] \
        + [f">{bounds[-1]}"]


def bucket_of(ranks: np.ndarray, edges: Sequence[int]) -> np.ndarray:
    """Each rank's bucket index in :func:`bucket_labels` (NaN, unseen: the last)."""
    r = np.where(np.isfinite(ranks), ranks, np.inf)
    return np.searchsorted(np.asarray(edges, dtype=float), r, side="left")


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
    """Talbot et al.'s (2011) fuzzy reordering score of the output's order against the source's:
    1 - (C - 1) / (M - 1), where the aligned source words, listed in the order of the target
    words they align to and framed by a sentence-start and a sentence-end marker (M words in
    all), fall into C chunks of source-consecutive words. With m aligned words that is
    1 - breaks / (m + 1), a break being a pair of neighbours whose source ranks are not
    consecutive, the first word not the source's first, or the last not its last; 1 is
    monotone, 0 (for m >= 2) reversed. Each source word counts once, at its first aligned
    target position (ties in source order); source ranks count aligned words only, so an
    unaligned source word is no break. NaN below two aligned words."""
    first: dict[int, int] = {}
    for s, t in sorted(set(alignment), key=lambda p: (p[1], p[0])):
        first.setdefault(s, t)
    rank = {s: r for r, s in enumerate(sorted(first))}
    order = [rank[s] for s, _ in sorted(first.items(), key=lambda p: (p[1], p[0]))]
    m = len(order)
    if m < 2:
        return float("nan")
    framed = [-1, *order, m]  # the sentence-start and -end markers
    breaks = sum(b != a + 1 for a, b in zip(framed, framed[1:], strict=False))
    return 1.0 - breaks / (m + 1)


# ---------------------------------------------------------------------------- curves

def orders(sentences: pd.DataFrame, prefix: str = "kl_sum_") -> list[int]:
    """The n-gram orders a per-sentence table has columns ``<prefix><order>`` for (KL sums;
    ``lm_logprob_``: LM scores of the translations)."""
    return sorted(int(c[len(prefix):]) for c in sentences if c.startswith(prefix))


def _finite_mean(grid: np.ndarray, w: np.ndarray) -> np.ndarray:
    has = np.isfinite(grid)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(has, grid, 0.0) @ w) / (has @ w)


def _token_grid(tokens: pd.DataFrame, steps: np.ndarray, sentences: np.ndarray,
                edges: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Hits and pieces per (step, sentence, frequency bucket) of a per-piece table."""
    shape = (len(steps), len(sentences), len(edges) + 1)
    hits, total = np.zeros(shape), np.zeros(shape)
    i = np.searchsorted(steps, tokens.step.to_numpy())
    j = np.searchsorted(sentences, tokens.sentence.to_numpy())
    k = bucket_of(tokens.train_rank.to_numpy(dtype=float), edges)
    np.add.at(hits, (i, j, k), tokens.hit.to_numpy(dtype=float))
    np.add.at(total, (i, j, k), 1.0)
    return hits, total


def curves(sentences: pd.DataFrame, checkpoints: pd.DataFrame,
           tokens: pd.DataFrame | None = None, edges: Sequence[int] = (),
           weights: np.ndarray | None = None) -> pd.DataFrame:
    """One set's curves per step (columns step, measure, value), each from the columns its
    per-sentence table has:

    - ``lm_<order>``: the n-gram LM score of the greedy translations, mean log-probability per
      piece (Voita et al.'s LM stage);
    - ``token_accuracy`` and ``token_accuracy[<ranks>]``: teacher-forced token accuracy, over
      all reference pieces and per bucket of training-frequency ranks ``edges`` (from the
      per-piece ``tokens`` table);
    - ``fuzzy_reordering`` and ``kendall_tau``: the mean over sentences with a score;
    - ``kl_<order>``: the teacher-forced KL to each n-gram LM per target position (Chang &
      Bergen's reading);
    - ``lexical_accuracy`` (lexicon hits) and ``reordering`` (Kendall-tau distance
      (1 - tau) / 2): the earlier readings, where the table has their columns;
    - ``bleu``, from the per-checkpoint table.

    ``weights``: each sentence's multiplicity (a bootstrap resample)."""
    s = sentences.sort_values(["step", "sentence"])
    ids = np.sort(s.sentence.unique())
    w = np.ones(len(ids)) if weights is None else np.asarray(weights, dtype=float)
    steps = np.sort(s.step.unique())

    def grid(column: str) -> np.ndarray:
        return s[column].to_numpy(dtype=float).reshape(len(steps), len(ids))

    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for k in orders(s, "lm_logprob_"):
            out[f"lm_{k}"] = (grid(f"lm_logprob_{k}") @ w) / (grid("lm_pieces") @ w)
        if tokens is not None and len(tokens):
            hits, total = _token_grid(tokens, steps, ids, edges)
            h, n = np.einsum("tsb,s->tb", hits, w), np.einsum("tsb,s->tb", total, w)
            out["token_accuracy"] = h.sum(1) / n.sum(1)
            for b, label in enumerate(bucket_labels(edges)):
                out[f"token_accuracy[{label}]"] = h[:, b] / n[:, b]
        if "fuzzy" in s:
            out["fuzzy_reordering"] = _finite_mean(grid("fuzzy"), w)
        if "tau" in s:
            out["kendall_tau"] = _finite_mean(grid("tau"), w)
        if orders(s):
            positions = grid("positions") @ w
            for k in orders(s):
                out[f"kl_{k}"] = (grid(f"kl_sum_{k}") @ w) / positions
        if "lexical_hits" in s:
            out["lexical_accuracy"] = (grid("lexical_hits") @ w) / (grid("lexical_total") @ w)
        if "tau" in s:
            out["reordering"] = _finite_mean((1 - grid("tau")) / 2, w)
    out["bleu"] = checkpoints.set_index("step").bleu.reindex(steps).to_numpy(dtype=float)
    return pd.DataFrame([dict(step=int(st), measure=m, value=float(v[i]))
                         for m, v in out.items() for i, st in enumerate(steps)])


def reference_values(reference: pd.DataFrame) -> dict[str, float]:
    """The references' own value of each measure that has one (their LM scores, fuzzy
    reordering score, Kendall's tau and Kendall-tau distance), from their per-sentence table."""
    out: dict[str, float] = {}
    for k in orders(reference, "lm_logprob_"):
        out[f"lm_{k}"] = float(reference[f"lm_logprob_{k}"].sum() / reference.lm_pieces.sum())
    for column, measure in (("fuzzy", "fuzzy_reordering"), ("tau", "kendall_tau")):
        if column in reference:
            v = reference[column].to_numpy(dtype=float)
            out[measure] = float(np.nanmean(v)) if np.isfinite(v).any() else np.nan
    if "tau" in reference:
        out["reordering"] = (1 - out["kendall_tau"]) / 2
    return out


def unit_curves(sentences: pd.DataFrame, checkpoints: pd.DataFrame, reference: pd.DataFrame,
                tokens: pd.DataFrame | None = None, edges: Sequence[int] = ()) -> pd.DataFrame:
    """A translate unit's curves per set (:func:`curves`), with the references' own value
    (``reference``), the set's sentence count and the aligner behind its reordering scores
    (``aligner``)."""
    found = []
    for name, s in sentences.groupby("set", sort=True):
        tk = tokens[tokens.set == name] if tokens is not None and len(tokens) else None
        c = curves(s, checkpoints[checkpoints.set == name], tk, edges)
        refs = reference_values(reference[reference.set == name])
        c["reference"] = c.measure.map(refs).astype(float)
        aligner = ",".join(sorted(s.aligner.unique())) if "aligner" in s else ""
        found.append(c.assign(set=name, sentences=s.sentence.nunique(), aligner=aligner))
    return pd.concat(found, ignore_index=True) if found else pd.DataFrame()


__all__ = ["SMOOTHING", "TargetLM", "bucket_labels", "bucket_of", "curves", "fit_ngram_lm",
           "frequency_ranks", "fuzzy_reordering_score", "kendall_tau", "kl_on_support",
           "next_token_probs", "orders", "reference_values", "sequence_logprob",
           "teacher_forced_hits", "unit_curves", "words"]
