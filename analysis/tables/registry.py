"""Every table the analysis writes, by name: what a row is, the columns that identify it and how
it pools over seeds. The stages, the seed pooling, the claims, the figures and the report name
tables only through the constants defined here, so a new table is one function in its family's
module and one :func:`table` entry below (the aggregate refuses a table without one)."""

from __future__ import annotations

from dataclasses import dataclass

# How a table pools over seeds (Table.pooling)
MEAN = "mean"            # every measured column averaged over seeds, with a t-interval
FIRST = "first"          # the same for every seed: taken from the first
PER_SEED = "per_seed"    # read by each seed's claims only: not pooled
EVALUATED = "evaluated"  # evaluated again on the pooled tables
ACROSS = "across"        # made by the aggregate stage from several seeds: never per seed


@dataclass(frozen=True)
class Table:
    """One analysis table: ``keys`` identify a row within one seed's table, ``pooled`` are the
    measured columns averaged over seeds (the first gets the interval), ``dropped`` the
    per-seed columns not worth pooling; ``pooling`` says how the aggregate treats it."""

    name: str
    what: str
    keys: tuple[str, ...]
    pooling: str = MEAN
    pooled: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()


TABLES: dict[str, Table] = {}


def table(name: str, what: str, keys: tuple[str, ...], pooling: str = MEAN,
          pooled: tuple[str, ...] = (), dropped: tuple[str, ...] = ()) -> str:
    """Register a table; returns its name (the constant the code uses)."""
    if name in TABLES:
        raise ValueError(f"table {name!r} is registered twice")
    if (pooling == MEAN) != bool(pooled):
        raise ValueError(f"table {name!r}: pooled columns go with pooling={MEAN!r} only")
    TABLES[name] = Table(name, what, keys, pooling, pooled, dropped)
    return name


# ---------------------------------------------------------------------------- similarity

_SIM = ("value", "baseline", "k_a", "k_b")
_STACK = ("model", "seed", "probe", "side")

CONVERGENCE = table(
    "convergence", "F2: a layer at a checkpoint vs the same layer at the final one",
    (*_STACK, "layer_a", "step_a", "metric"), pooled=_SIM, dropped=("baseline_std",))
TAGGER = table(
    "tagger", "F4: a layer at a checkpoint vs a final tagger's layer on the same tokens",
    (*_STACK, "layer_a", "step_a", "model_b", "metric"), pooled=_SIM, dropped=("baseline_std",))
LAYER_MATRIX = table(
    "layer_matrix", "F1: layer x layer, the checkpoint nearest a fraction vs the final one",
    (*_STACK, "fraction_target", "layer_a", "layer_b", "metric"), pooled=("value", "k_a", "k_b"),
    dropped=("baseline", "baseline_std"))
INTRINSIC_DIM = table(
    "intrinsic_dim", "the directions holding the variance share, per layer and checkpoint",
    (*_STACK, "layer", "step"), pooled=("k", "k_s2", "k_s", "rank"))
PER_TAG = table(
    "per_tag", "F5: a tag's (or a random subset's) N tokens, a layer vs its final state",
    (*_STACK, "layer_a", "step_a", "tag_family", "tag", "freq_matched", "metric"),
    pooled=(*_SIM, "ref_init"), dropped=("baseline_std",))
FAMILY = table(
    "family", "F3: the per-tag rows pooled per tag family, weighted by the tags' tokens",
    (*_STACK, "layer_a", "step_a", "tag_family", "metric"), pooled=_SIM, dropped=("baseline_std",))

# ---------------------------------------------------------------------------- concentration

CONCENTRATION = table(
    "concentration", "F6: concentration of activations or gradients per tag and checkpoint",
    (*_STACK, "layer", "step", "quantity", "tag"), pooled=("mean", "median"),
    dropped=("ci_low", "ci_high", "n_nan"))
FUNCTION_CONTENT = table(
    "function_content", "F6b: the frequency-matched function - content difference",
    (*_STACK, "layer", "step", "quantity"), pooled=("difference",), dropped=("ci_low", "ci_high"))

# ---------------------------------------------------------------------------- sanity (S1-S4)

SANITY_TOKENS = table(
    "sanity_tokens", "S1: similarity against token count (Gaussian data, init vs final)",
    ("source", "model", "probe", "layer", "n_tokens", "metric"), pooled=_SIM,
    dropped=("baseline_std",))
SENSITIVITY = table(
    "sensitivity", "S4: a final layer vs itself with components removed, or rotated",
    (*_STACK, "layer", "test", "j", "metric"), pooled=("value", "reference", "k_a", "k_b"))
SENSITIVITY_SUMMARY = table(
    "sensitivity_summary", "S4's verdict per test and metric",
    ("test", "metric"), pooling=EVALUATED)
SEEDS = table(
    "seeds", "S2: a final (or initial) layer vs the same model trained with another seed",
    ("model", "probe", "side", "layer", "seed_a", "seed_b", "checkpoint", "metric"),
    pooling=ACROSS)
LEARNED_LAYERS = table(
    "learned_layers", "a layer's learned and finished tests across seeds, per metric",
    ("model", "probe", "side", "layer", "metric"), pooling=ACROSS)

# ---------------------------------------------------------------------------- NMT stages

NMT_STAGES = table(
    "nmt_stages", "F7, C5: a translation model's stage measures per set and checkpoint, with "
    "the references' values", ("model", "seed", "set", "measure", "step"),
    pooled=("value", "reference"))

# ---------------------------------------------------------------------------- compression

COMPRESSION = table(
    "compression", "F8, F9: a model's quality with one layer projected onto k directions, or "
    "its weights pruned one-shot, per checkpoint, and its change from the unchanged model",
    ("model", "seed", "step", "compress", "layer", "method", "k", "sparsity", "measure"),
    pooled=("relative_change", "value", "reference"))
COMPRESSION_SUMMARY = table(
    "compression_summary", "C6: per checkpoint, k* (the fewest directions) or s* (the "
    "largest sparsity) within the tolerance; star interpolated, star_grid on the grid",
    ("model", "seed", "step", "compress", "layer", "method"), pooled=("star", "star_grid"))

# ---------------------------------------------------------------------------- stability

STABILITY_PATH = table(
    "stability_path", "F10: a model's quality on the line between its and its child's last "
    "weights, per rewind point", ("model", "seed", "step", "alpha", "measure"),
    pooled=("value",), dropped=("child", "data_seed", "child_data_seed"))
STABILITY = table(
    "instability", "F10, C7: per rewind point, the barrier on that line, relative to its ends, "
    "and whether W_k is stable", ("model", "seed", "step", "measure"),
    pooled=("relative_barrier", "barrier", "end_model", "end_child"),
    dropped=("stable", "alpha_max"))
TICKETS = table(
    "lottery_tickets", "F11, C8: each lottery ticket's and control's quality after training, "
    "and its change from the dense model's",
    ("model", "seed", "method", "rewind", "round", "measure"),
    pooled=("relative_change", "value", "dense", "sparsity", "rewind_step", "rewind_share"),
    dropped=("dir", "stable"))
COMMIT = table(
    "commit", "F10: when a model becomes stable, when its rewound ticket matches, when each "
    "layer converges and (NMT) its C5 stage steps", ("model", "seed", "event", "label"),
    pooled=("step", "share"), dropped=())
FINAL_SIMILARITY = table(
    "final_similarity", "a child's or a ticket's last layer vs the model's own last layer",
    ("model", "seed", "other", "dir", "probe", "side", "layer", "metric"), pooled=_SIM,
    dropped=("baseline_std",))

# ---------------------------------------------------------------------------- bookkeeping

CHECKPOINTS = table(
    "checkpoints", "each model's checkpoints: epoch, tokens seen, losses, learning rate",
    ("model", "seed", "step"),
    pooled=("train_loss", "valid_loss", "valid_ppl", "tokens_seen", "epoch", "epochs"))
MODELS = table(
    "models", "each model: training length, final evaluation, learned and its endpoint",
    ("model", "seed"),
    pooled=("final_valid_ppl", "test_ppl", "test_accuracy", "majority_baseline", "test_bleu",
            "epochs", "plateau_gain", "test_bleu_earlier", "test_bleu_rise"),
    dropped=("majority_tag", "learned", "not_learned_because"))
SIZES = table(
    "sizes", "tokens stored and used, dims and checkpoints per model, probe and layer",
    ("model", "seed", "probe", "side", "layer"), pooling=FIRST)
SETTINGS = table(
    "settings", "every analysis setting as a dotted key and its JSON value",
    ("key",), pooling=FIRST)

# ---------------------------------------------------------------------------- claims

CLAIMS = table(
    "claims", "a claim on one unit and seed under one metric: its statistic, p and whether it "
    "reaches the smallest effect",
    ("claim", "model", "seed", "probe", "scope", "metric"), pooling=EVALUATED)
CLAIMS_SUMMARY = table(
    "claims_summary", "per claim and metric: units passing, failing and not evaluable",
    ("claim", "metric"), pooling=EVALUATED)
ANSWER = table(
    "answer", "the verdict per claim tested across seeds (primary reading) and every other "
    "reading and metric as agreement",
    ("claim", "metric"), pooling=EVALUATED)
CLAIMS_OVER_SEEDS = table(
    "claims_over_seeds", "per claim unit: the mean statistic over seeds and seeds passing",
    ("claim", "model", "probe", "scope", "metric"), pooling=ACROSS)
