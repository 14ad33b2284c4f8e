"""What the claims say and the row every unit evaluation writes (one per claim, unit, seed and
metric)."""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import numpy as np

CLAIM_COLUMNS = ["claim", "model", "seed", "probe", "scope", "metric", "statistic", "value",
                 "threshold", "ci_low", "ci_high", "n", "p_value", "verdict", "detail"]
CLAIMS = {
    "C1": "lower layers reach their final representation first (LM, NMT encoder)",
    "C2": "POS-restricted similarity stabilises before topic-restricted similarity",
    "C2 size": "POS-restricted similarity stabilises before that of random token subsets of "
               "the same size",
    "C2b": "similarity to the POS tagger stabilises before similarity to the topic tagger",
    "C3": "recurrent layers grow more similar to the taggers over training, the embedding less",
    "C3 rec": "recurrent layers grow more similar to the taggers over training",
    "C3 emb": "the embedding grows less similar to the taggers over training",
    "C4": "function-word gradients are more concentrated than content-word gradients, "
          "within word-frequency bins",
    "C5": "NMT training is a target-side LM first, then lexical translation, then reordering "
          "(Voita et al. 2021: n-gram LM score of the translations, accuracy, reordering)",
    "C5 KL (Chang & Bergen)": "NMT training is a target-side LM first, then lexical "
                              "translation, then reordering (teacher-forced KL to n-gram LMs)",
    "C6": "at the end of training a layer keeps the model's quality projected onto at most half "
          "its width, and needs fewer SVCCA than random directions (Raghu et al. 2017)",
    "C6b": "hypothesis of ours: the directions a layer needs (k*) fall over the second half of "
           "training, as its representation converges",
    "C6c": "hypothesis of ours: the share of weights one-shot magnitude pruning can remove "
           "within the tolerance (s*) rises over training",
    "C7": "stability to SGD noise emerges early: two copies trained on from W_k with other data "
          "orders end in one linearly connected basin from a rewind point within the first 10% "
          "of training (Frankle et al. 2020)",
    "C8": "iterative magnitude pruning rewound to the first stable point finds a subnetwork "
          "that matches the dense model at >= 50% sparsity, where random pruning and the "
          "re-initialised ticket do not (Frankle & Carbin 2019; Frankle et al. 2020)",
    "C8 k0": "the same with iterative magnitude pruning rewound to the initialisation (Frankle "
             "& Carbin 2019, without late rewinding)",
    "C9": "hypothesis of ours: every layer makes 90% of its progress to its final "
          "representation after the model has become stable",
}
# the figure (name prefix) that shows each claim
FIGURES = {"C1": "f2_convergence", "C2": "f3_family", "C2b": "f4_tagger", "C3": "f4_tagger",
           "C4": "f6b_function_content", "C5": "f7_nmt_stages", "C6": "f8_compression",
           "C6b": "f8_compression", "C6c": "f9_pruning", "C7": "f10_commit",
           "C8": "f11_tickets", "C9": "f10_commit"}
PASS, FAIL, NA = "PASS", "FAIL", "NA"
SHARED = " (shared init)"


def row(claim: str, r: Mapping, scope: str, metric: str, statistic: str, value: float,
        threshold: float, verdict: str, detail: str, n: int = 0, ci=(np.nan, np.nan),
        p: float = np.nan) -> dict:
    """One claim row (columns CLAIM_COLUMNS); ``r`` gives model, seed and probe."""
    return dict(claim=claim, model=r.get("model", ""), seed=r.get("seed", np.nan),
                probe=r.get("probe", ""), scope=scope, metric=metric, statistic=statistic,
                value=value, threshold=threshold, ci_low=ci[0], ci_high=ci[1], n=n,
                p_value=p, verdict=verdict, detail=detail)


def fmt(x: float) -> str:
    return "never" if not np.isfinite(x) else f"{x:g}"


def hash_seed(key) -> int:
    """A seed from a unit's key (stable across processes, unlike hash())."""
    return zlib.crc32("|".join(map(str, key)).encode())


def base_claim(claim: str) -> str:
    """The claim a reading belongs to: "C3 rec (shared init)" -> "C3", "C5 KL (...)" -> "C5"."""
    return claim.split()[0]


def statement(claim: str) -> str:
    """What a claim says; a control's claim (" (shared init)") says what its own does, and a
    claim on one architecture ("C4 lstm_lm") what the claim does, on that architecture."""
    own = claim.replace(SHARED, "")
    if own in CLAIMS:
        return CLAIMS[own]
    for known in sorted(CLAIMS, key=len, reverse=True):
        if own.startswith(known + " "):
            return f"{CLAIMS[known]} ({own[len(known) + 1:]})"
    return ""
