"""The analysis and plot settings: one dataclass per config group (conf/analysis, conf/plot),
field for field, so the config is checked against them (unknown keys, types, ranges) and the
analyses read typed values. Plain dataclasses: no Hydra here.

The values live in the YAML files only (conf/analysis/default.yaml, conf/plot/default.yaml,
changed by experiments): a field here has a type, its allowed range or values (``ge``, ``gt``,
``le``, ``lt``, ``choices``; pipeline/schema.py enforces them at start-up) and a line of help,
never a default, so a key missing from the YAML stops the run instead of taking a second value.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from analysis.fields import setting


@dataclass
class PerTag:
    """One N for every tag of a (probe, side): the token count of the ``min_tags``-th most
    frequent tag, clamped to [min_n, max_n]; tags with fewer tokens are left out."""

    max_n: int = setting(ge=2)
    min_n: int = setting(ge=2)
    min_tags: int = setting(ge=1)
    freq_bins: int = setting(ge=1, help="frequency-matched variant: equal counts per bin")
    random_subsets: int = setting(ge=0, help="C2's size control: random N-token subsets")
    metrics: list[str] = setting(help="the metrics on tag subsets (N is a few times the width)")


@dataclass
class Concentration:
    """C4's function - content difference: a word-type-level test within frequency bins."""

    n_boot: int = setting(ge=0, help="bootstrap of the function - content difference "
                          "(word types resampled within bin and group)")
    n_perm: int = setting(ge=0, help="permutations of function/content labels among the word "
                          "types of each bin behind the difference's p-value")
    tag_n_boot: int = setting(ge=0, help="per-tag bootstrap (0: means and medians only)")
    freq_bins: int = setting(ge=1, help="log-frequency bins of the function - content match")
    min_types: int = setting(ge=1, help="word types of each class a frequency bin needs "
                             "(fewer: merged with the next bin)")
    ci: float = setting(gt=0, lt=1)


@dataclass
class Sanity:
    """S1: similarity against token count."""

    dims: int = setting(ge=1)
    token_counts: list[int] = setting(ge=2)
    model: str | None = setting(help="init-vs-final curve of this model (null: the first LM)")


@dataclass
class Sensitivity:
    """S4 (Ding et al. 2021) on the final layers: removing the top-j principal components of
    one side must lower a metric monotonically in j; a random rotation with isotropic scaling
    must leave the metrics that claim that invariance unchanged (within ``tolerance``)."""

    pcs: list[int] = setting(ge=0)
    scale: float = setting(gt=0)
    tolerance: float = setting(gt=0)


@dataclass
class C1:
    min_layers: int = setting(ge=2)
    sides: list[str] = setting()


@dataclass
class C3:
    permutations: int = setting(ge=0, help="token re-pairings behind each unit's p (0: none)")


@dataclass
class Primary:
    """A claim's primary reading, fixed before the run: the metric whose seed means decide it
    and the smallest effect of interest (in the statistic's units)."""

    metric: str = setting()
    min_effect: float = setting(gt=0)


@dataclass
class C4:
    sides: list[str] = setting()


@dataclass
class C5:
    """NMT's training stages as Voita et al. (2021) measured them (analysis.claims.c5)."""

    share: float = setting(gt=0, lt=1, help="a measure has made its stage from the step its "
                           "monotone fit has made this share of its change")
    bleu_threshold: float = setting(ge=0, help="the outputs are translations from the first "
                                    "checkpoint with this greedy BLEU on bleu_set")
    bleu_set: str = setting(choices=("test2016", "pud"))
    lm_orders: list[int] = setting(ge=1, help="the n-gram LMs whose score peak marks the LM "
                                   "stage (the latest of their peaks)")
    lexical: str = setting(choices=("token_accuracy", "bleu"), help="the lexical stage's measure")
    freq_buckets: list[int] = setting(ge=1, help="upper training-frequency ranks of the token "
                                      "accuracy buckets (the last bucket open)")
    kl_order: int = setting(ge=1, help="Chang & Bergen's reading: the n-gram LM whose KL "
                            "minimum marks the LM stage")


@dataclass
class C6:
    mid: float = setting(gt=0, lt=1, help="C6b: k* at the compressed checkpoint nearest this "
                         "share of training against the last")


@dataclass
class C7:
    by: float = setting(gt=0, lt=1, help="stable by this share of training")


@dataclass
class C8:
    sparsity: float = setting(gt=0, lt=1, help="the first IMP round at least this sparse")
    tolerance: float = setting(gt=0, help="matching: validation loss at most this share above "
                               "the dense model's")


@dataclass
class Compression:
    tolerance: float = setting(ge=0, help="k*, s*: the primary quality at most this share "
                               "worse than the unprojected, unpruned model's")


@dataclass
class Claims:
    """The claims' definitions, smallest effects and α, fixed before any result was looked at."""

    convergence_threshold: float = setting(gt=0, le=1, help="progress (share of a curve's "
                                           "total change) from which a curve is converged")
    c1: C1 = setting()
    c3: C3 = setting()
    c4: C4 = setting()
    c5: C5 = setting()
    c6: C6 = setting()
    c7: C7 = setting()
    c8: C8 = setting()
    primary: dict[str, Primary] = setting(help="per claim: the metric and smallest effect that "
                                          "decide it")
    n_permutations: int = setting(ge=0, help="permutations behind each unit's p-value")
    alpha: float = setting(gt=0, lt=1)
    level: float = setting(gt=0, lt=1, help="confidence level of the effects' intervals")


@dataclass
class Learned:
    """When a model counts as trained (analysis/learned.py), fixed before any result."""

    window: float = setting(gt=0, lt=1, help="the last share of updates ...")
    max_gain: float = setting(gt=0, help="... over which valid ppl improves less than this")
    min_epochs: float = setting(ge=0, help="LMs: passes over the training data")
    max_rise: float = setting(ge=0, help="NMT: BLEU points since the earlier evaluation")
    max_final_lr_share: float = setting(gt=0, le=1, help="the endpoint: the last learning "
                                        "rate at most this share of its peak")
    late_window: float = setting(gt=0, lt=1)
    max_loss_change: float = setting(gt=0)
    late: float = setting(gt=0, lt=1, help="the late checkpoint: nearest this share of training")
    min_late_cka: float = setting(gt=0, le=1)
    metrics: list[str] = setting(help="the metrics of the learned and finished tests")
    margin: float = setting(ge=0, help="learned: the chance-corrected gain's lower bound above "
                            "this")
    n_boot: int = setting(ge=100, help="bootstrap resamples of the seed pairs")
    epsilon: float = setting(gt=0, help="finished: late change <= epsilon x the seeds' spread")


@dataclass
class AnalysisSettings:
    """conf/analysis/default.yaml; every table records the settings it depends on."""

    variance: float = setting(gt=0, le=1)
    variance_rule: str = setting(choices=("s2", "s"))
    fixed_k: list[int] = setting(ge=1)
    metrics: list[str] = setting()
    matrix_metrics: list[str] = setting()
    knn_k: int = setting(ge=1, help="mutual_knn: neighbours per token")
    rsa_max_rows: int = setting(ge=3, help="rsa: a seeded subsample of this many tokens")
    max_tokens: int | None = setting(ge=2, help="per (probe, side); null: every token")
    baseline_shuffles: int = setting(ge=0)
    fractions: list[float] = setting(ge=0, le=1)
    tag_columns: dict[str, str] = setting()
    act_tag_columns: dict[str, str] = setting()
    grad_tag_columns: dict[str, str] = setting()
    exclude_tags: list[str] = setting()
    per_tag: PerTag = setting()
    function_tags: list[str] = setting()
    content_tags: list[str] = setting()
    concentration: Concentration = setting()
    sanity: Sanity = setting()
    sensitivity: Sensitivity = setting()
    compression: Compression = setting()
    claims: Claims = setting()
    learned: Learned = setting()
    device: str = setting(choices=("cpu", "cuda"), help="where the similarity products run")
    seed: int = setting(ge=0, help="token subsample, shuffles and bootstrap (not the models')")


@dataclass
class PlotSettings:
    """conf/plot/default.yaml."""

    formats: list[str] = setting(choices=("png", "pdf", "svg"))
    dpi: int = setting(ge=10)
    metrics: list[str] = setting(help="panels of F2/F4/S1 (all: every computed metric)")
    matrix_metrics: list[str] = setting(help="F1 rows")
    per_tag_metrics: list[str] = setting(help="F3; F5: the first")
    primary_metric: str = setting(help="F7")
    min_tag_tokens: int = setting(ge=1, help="F6: rarer tags are not drawn")
    workers: int = setting(ge=1, help="figure groups drawn in parallel processes")


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


NESTED = {"per_tag", "concentration", "sanity", "claims", "c1", "c3", "c4", "c5", "c6", "c7", "c8",
          "primary", "learned", "sensitivity", "compression"}

__all__ = ["AnalysisSettings", "C1", "C3", "C4", "C5", "C6", "C7", "C8", "Claims", "Compression",
           "Concentration", "Learned",
           "PerTag", "PlotSettings", "Primary", "Sanity", "Sensitivity", "flat"]
