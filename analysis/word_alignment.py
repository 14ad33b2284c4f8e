"""Word alignments of sentence pairs, for the reordering measure of NMT's training stages.

eflomal (Östling & Tiedemann 2016; a Bayesian HMM aligner with fertility, so a jump has a
distortion model) is fitted once on a training bitext, whose alignments become Dirichlet priors
(``eflomal.calculate_priors``); each later set of pairs is aligned with those priors in both
directions and symmetrised with grow-diag-final-and (`nltk.translate.gdfa`). IBM Model 1
(`nltk.translate`) is the fallback when eflomal is not installed: it has no distortion model
and ties go to the last repeated source word, so its alignments invent crossings. eflomal
samples with a seed from /dev/urandom: two runs give slightly different alignments.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ALIGNERS = ("eflomal", "ibm1")
Pair = tuple[Sequence[str], Sequence[str]]


def eflomal_available() -> bool:
    """Whether the eflomal package (and its compiled aligner) can be imported."""
    try:
        import eflomal  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class Aligner:
    """A fitted aligner: ``name`` (eflomal or ibm1), eflomal's priors (the lines of its priors
    file) or the IBM Model 1 model, and eflomal's independent samplers."""

    name: str
    priors: tuple[str, ...] = ()
    ibm: Any = None
    samplers: int = 3


def ibm1_model(pairs: Iterable[Pair], iterations: int = 5):
    """IBM Model 1 (`nltk.translate`) of P(target word | source word), trained on (source,
    target) sentence pairs."""
    from nltk.translate import AlignedSent, IBMModel1

    return IBMModel1([AlignedSent(list(t), list(s)) for s, t in pairs], iterations)


def ibm1_alignment(model, source: Sequence[str], target: Sequence[str]) -> list[tuple[int, int]]:
    """(source position, target position) links of IBM Model 1's best alignment of a pair,
    each target word to its likeliest source word (links to NULL dropped)."""
    from nltk.translate import AlignedSent

    pair = AlignedSent(list(target), list(source))
    model.align(pair)
    return [(i, j) for j, i in pair.alignment if i is not None]


def _eflomal_links(pairs: Sequence[Pair], samplers: int, priors: Sequence[str] | None
                   ) -> tuple[list[str], list[str]]:
    """eflomal's forward and reverse links ("i-j" per line) of every pair."""
    import eflomal

    source = [" ".join(s) for s, _ in pairs]
    target = [" ".join(t) for _, t in pairs]
    with tempfile.TemporaryDirectory() as tmp:
        fwd, rev = Path(tmp) / "fwd", Path(tmp) / "rev"
        eflomal.Aligner(n_samplers=samplers).align(
            source, target, links_filename_fwd=str(fwd), links_filename_rev=str(rev),
            priors_input=None if priors is None else list(priors))
        return fwd.read_text().splitlines(), rev.read_text().splitlines()


def fit_aligner(bitext: Sequence[Pair], name: str, samplers: int = 3,
                ibm1_iterations: int = 5) -> Aligner:
    """An aligner fitted on (source words, target words) training pairs: eflomal's priors
    from its alignment of the bitext, or IBM Model 1 (``name`` ibm1, or eflomal not
    installed)."""
    if name not in ALIGNERS:
        raise ValueError(f"aligner {name!r} is not one of {ALIGNERS}")
    if name == "eflomal" and eflomal_available():
        import eflomal

        fwd, rev = _eflomal_links(bitext, samplers, None)
        tables = eflomal.calculate_priors([" ".join(s) for s, _ in bitext],
                                          [" ".join(t) for _, t in bitext], fwd, rev)
        with tempfile.TemporaryFile("w+", encoding="utf-8") as f:
            eflomal.write_priors(f, *tables)
            f.seek(0)
            priors = tuple(f.read().splitlines())
        return Aligner("eflomal", priors=priors, samplers=samplers)
    return Aligner("ibm1", ibm=ibm1_model(bitext, ibm1_iterations))


def align(aligner: Aligner, pairs: Sequence[Pair]) -> list[list[tuple[int, int]]]:
    """The (source position, target position) links of every pair: eflomal's both directions
    symmetrised with grow-diag-final-and, or IBM Model 1's best alignment. A pair with an
    empty side has none."""
    if aligner.name == "ibm1":
        return [ibm1_alignment(aligner.ibm, s, t) if len(s) and len(t) else []
                for s, t in pairs]
    from nltk.translate.gdfa import grow_diag_final_and

    keep = [k for k, (s, t) in enumerate(pairs) if len(s) and len(t)]
    out: list[list[tuple[int, int]]] = [[] for _ in pairs]
    if not keep:
        return out
    fwd, rev = _eflomal_links([pairs[k] for k in keep], aligner.samplers, aligner.priors)
    for k, f, r in zip(keep, fwd, rev, strict=True):
        s, t = pairs[k]
        out[k] = sorted(grow_diag_final_and(len(s), len(t), f, r))
    return out


__all__ = ["ALIGNERS", "Aligner", "align", "eflomal_available", "fit_aligner", "ibm1_alignment",
           "ibm1_model"]
