"""The analysis and plot settings: one dataclass per config group (conf/analysis, conf/plot),
field for field, so the config is checked against them (unknown keys, types, ranges) and the
analyses read typed values. Plain dataclasses: no Hydra here.

Field metadata states the allowed range (``ge``, ``gt``, ``le``, ``lt``) or values (``choices``)
of a setting; pipeline/schema.py enforces them at start-up.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from analysis.fields import setting


def _list(*values, **bounds):
    return field(default_factory=lambda: list(values), metadata=bounds)


def _dict(**values):
    return field(default_factory=lambda: dict(values))


@dataclass
class PerTag:
    """One N for every tag of a (probe, side): the token count of the ``min_tags``-th most
    frequent tag, clamped to [min_n, max_n]; tags with fewer tokens are left out."""

    max_n: int = setting(300, ge=2)
    min_n: int = setting(100, ge=2)
    min_tags: int = setting(4, ge=1)
    freq_bins: int = setting(3, ge=1)      # frequency-matched variant: equal counts per bin
    random_subsets: int = setting(4, ge=0)  # C2's size control: random N-token subsets
    metrics: list[str] = _list("svcca_k", "cka", "cka_debiased", "procrustes")


@dataclass
class Concentration:
    n_boot: int = setting(200, ge=0)       # bootstrap of the function - content difference
    tag_n_boot: int = setting(0, ge=0)     # per-tag means and medians only when 0
    freq_bins: int = setting(5, ge=1)
    ci: float = setting(0.95, gt=0, lt=1)


@dataclass
class Sanity:
    """S1: similarity against token count."""

    dims: int = setting(200, ge=1)
    token_counts: list[int] = _list(250, 500, 1000, 2000, 5000, ge=2)
    model: str | None = None              # init-vs-final curve of this model (None: the first)


@dataclass
class Sensitivity:
    """S4 (Ding et al. 2021) on the final layers: removing the top-j principal components of
    one side must lower a metric monotonically in j; a random rotation with isotropic scaling
    must leave the metrics that claim that invariance unchanged (within ``tolerance``)."""

    pcs: list[int] = _list(0, 1, 2, 4, 8, 16, ge=0)
    scale: float = setting(3.0, gt=0)
    tolerance: float = setting(1e-6, gt=0)


@dataclass
class C1:
    min_rho: float = setting(0.5, ge=-1, le=1)
    min_layers: int = setting(2, ge=2)
    sides: list[str] = _list("lm", "source")


@dataclass
class C2b:
    # a curve is stable from the first checkpoint after which it stays within this share of
    # its range (max - min over training) of its final value
    tolerance: float = setting(0.1, gt=0, lt=1)


@dataclass
class C3:
    margin: float = setting(0.02, ge=0)


@dataclass
class C4:
    min_difference: float = 0.0
    sides: list[str] = _list("lm")


@dataclass
class C5:
    kl_order: int = setting(3, ge=1)       # the n-gram LM whose KL minimum marks the LM stage
    share: float = setting(0.9, gt=0, le=1)  # lexical / reordering stage: share of final value
    resamples: int = setting(200, ge=0)    # bootstrap resamples of the sentences
    min_gap: float = 0.0                   # each stage this share of training after the last


@dataclass
class Claims:
    """Thresholds of the claims, fixed before any result was looked at."""

    convergence_threshold: float = setting(0.9, gt=0, le=1)  # similarity to final = converged
    sustained: bool = True                # ... from the first step after which it stays above
    c1: C1 = field(default_factory=C1)
    c2b: C2b = field(default_factory=C2b)
    c3: C3 = field(default_factory=C3)
    c4: C4 = field(default_factory=C4)
    c5: C5 = field(default_factory=C5)
    # a metric supports a claim when this share of its (unit, seed) evaluations pass, and
    # contradicts it at 1 - support or less; the claim holds when every metric supports it
    support: float = setting(0.75, gt=0.5, le=1)
    # permutations behind each unit's p-value; a claim is robust when at least robust_share
    # of the metrics that evaluated it support it and their pooled p (pooled_test) < alpha
    n_permutations: int = setting(50, ge=0)
    alpha: float = setting(0.05, gt=0, lt=1)
    robust_share: float = setting(0.667, gt=0, le=1)
    # the pooled test: every sign assignment when a claim has at most this many units, else
    # pooled_permutations random ones
    pooled_exact_max: int = setting(14, ge=1, le=20)
    pooled_permutations: int = setting(10000, ge=100)


@dataclass
class Learned:
    """When a model counts as trained (analysis/learned.py), fixed before any result."""

    window: float = setting(0.25, gt=0, lt=1)     # the last share of updates ...
    max_gain: float = setting(0.03, gt=0)          # ... over which valid ppl improves less
    min_epochs: float = setting(3.0, ge=0)         # LMs: passes over the training data
    max_rise: float = setting(0.5, ge=0)           # NMT: BLEU points since 75% of training
    # the endpoint of an annealed schedule: the last checkpoint's learning rate is at most
    # this share of its peak, and validation loss over the last late_window of updates
    # changes by less than max_loss_change (relative)
    max_final_lr_share: float = setting(0.01, gt=0, le=1)
    late_window: float = setting(0.1, gt=0, lt=1)
    max_loss_change: float = setting(0.01, gt=0)
    # ... and every analysed layer's CKA between the checkpoint nearest `late` of training
    # and the last is at least min_late_cka (models analysed over training)
    late: float = setting(0.9, gt=0, lt=1)
    min_late_cka: float = setting(0.98, gt=0, le=1)


@dataclass
class AnalysisSettings:
    """conf/analysis/default.yaml; every table records the settings it depends on."""

    variance: float = setting(0.99, gt=0, le=1)
    variance_rule: str = setting("s2", choices=("s2", "s"))
    fixed_k: list[int] = _list(20, 50, ge=1)
    metrics: list[str] = _list("svcca", "svcca_k", "pwcca", "cka", "cka_debiased", "procrustes",
                               "rsa")
    matrix_metrics: list[str] = _list("svcca", "svcca_k", "cka")
    knn_k: int = setting(10, ge=1)            # mutual_knn: neighbours per token
    rsa_max_rows: int = setting(1000, ge=3)   # rsa: a seeded subsample of this many tokens
    max_tokens: int | None = setting(5000, ge=2)  # per (probe, side); None: every token
    baseline_shuffles: int = setting(2, ge=0)
    fractions: list[float] = _list(0.0, 0.35, 0.75, 1.0, ge=0, le=1)
    tag_columns: dict[str, str] = _dict(lm="pos_target", source="pos", target="pos_target")
    act_tag_columns: dict[str, str] = _dict(lm="pos", source="pos", target="pos")
    grad_tag_columns: dict[str, str] = _dict(lm="pos_target", source="pos", target="pos_target")
    exclude_tags: list[str] = _list("</s>", "X")
    per_tag: PerTag = field(default_factory=PerTag)
    function_tags: list[str] = _list("ADP", "CONJ", "DET", "PRON", "PRT")
    content_tags: list[str] = _list("NOUN", "VERB", "ADJ", "ADV")
    concentration: Concentration = field(default_factory=Concentration)
    sanity: Sanity = field(default_factory=Sanity)
    sensitivity: Sensitivity = field(default_factory=Sensitivity)
    claims: Claims = field(default_factory=Claims)
    learned: Learned = field(default_factory=Learned)
    # where the similarity products run (the bases stay there); results are the same to
    # float tolerance
    device: str = setting("cpu", choices=("cpu", "cuda"))
    # seeds the token subsample, shuffles and bootstrap; fixed, so that models trained with
    # different seeds are compared on the same tokens (the model seed is `seed`)
    seed: int = setting(0, ge=0)


@dataclass
class PlotSettings:
    """conf/plot/default.yaml."""

    formats: list[str] = _list("png", choices=("png", "pdf", "svg"))
    dpi: int = setting(110, ge=10)
    # panels per figure ("all": every computed metric)
    metrics: list[str] = _list("svcca", "cka")                 # F2/F4/S1
    matrix_metrics: list[str] = _list("svcca", "cka")          # F1 rows
    per_tag_metrics: list[str] = _list("svcca_k20", "cka")     # F3; F5: the first
    primary_metric: str = "svcca"                              # F7
    min_tag_tokens: int = setting(20, ge=1)                     # F6: rarer tags not drawn
    workers: int = setting(2, ge=1)       # figure groups drawn in parallel processes


def flat(settings) -> dict[str, str]:
    """A settings dataclass as dotted keys with JSON values (for the settings table)."""
    out = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict) and prefix.split(".")[-1] in NESTED:
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        else:
            out[prefix] = json.dumps(value)

    for key, value in asdict(settings).items():
        walk(key, value)
    return out


NESTED = {"per_tag", "concentration", "sanity", "claims", "c1", "c3", "c4", "c5", "learned",
          "sensitivity"}

__all__ = ["AnalysisSettings", "C1", "C3", "C4", "C5", "Claims", "Concentration", "Learned",
           "PerTag", "PlotSettings", "Sanity", "Sensitivity", "flat"]
