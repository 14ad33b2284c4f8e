"""The data group's settings (conf/data), field for field: what the prepare stage reads, typed.
Here rather than in pipeline.schema (which checks the config against them at start-up), so that
data_prep takes them without importing the pipeline. Plain dataclasses: no Hydra here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A field without a default must be set (OmegaConf reads "???" as a mandatory value).
REQUIRED: Any = "???"


def setting(default: Any = REQUIRED, help: str = "", **bounds) -> Any:
    """A field with its allowed range or values (``ge``, ``gt``, ``le``, ``lt``, ``choices``;
    checked at start-up) and a line of ``help`` (quoted when a value is refused): the twin of
    analysis.fields.setting, as data_prep and analysis import nothing of each other."""
    return field(default=default, metadata={**bounds, "help": help})


@dataclass
class BrownData:
    max_docs_per_genre: int | None = setting(ge=1, help="documents kept per genre (null: all)")
    fractions: dict[str, float] = setting(help="the document split: valid, test, probe")
    split_seed: int = setting()


@dataclass
class LMData:
    vocab_size: int = setting(ge=10)


@dataclass
class Capped:
    max_sentences: int | None = setting(ge=1, help="the first N sentences (null: all)")


@dataclass
class Multi30kData:
    max_train_pairs: int | None = setting(ge=1)
    max_test_pairs: int | None = setting(ge=1, help="the first N test pairs (null: all)")
    valid: str = setting()
    test: str = setting()


@dataclass
class BPEData:
    vocab_size: int = setting(ge=10)
    character_coverage: float = setting(gt=0, le=1)
    input_sentence_size: int = setting(ge=1)


@dataclass
class UserProbe:
    """A probe corpus of the user's: a CoNLL-U file (UD tags; read as a word-level probe). An
    entry the user writes (``+data.probes.NAME.conllu=FILE``), not a file of conf/: its optional
    key keeps a value here."""

    conllu: str = REQUIRED
    max_sentences: int | None = setting(None, ge=1)


@dataclass
class DataConfig:
    """conf/data/default.yaml; the values are there alone."""

    brown: BrownData = setting()
    lm: LMData = setting()
    ewt: Capped = setting()
    pud: Capped = setting()
    pmb: Capped = setting()
    multi30k: Multi30kData = setting()
    bpe: BPEData = setting()
    probes: dict[str, UserProbe] = setting(help="name -> your CoNLL-U file")
    preprocess_workers: int = setting(ge=1)
