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
    max_docs_per_genre: int | None = setting(None, ge=1)
    fractions: dict[str, float] = field(
        default_factory=lambda: {"valid": 0.05, "test": 0.05, "probe": 0.10})
    split_seed: int = 13


@dataclass
class LMData:
    vocab_size: int = setting(10000, ge=10)


@dataclass
class Capped:
    max_sentences: int | None = setting(None, ge=1)


@dataclass
class Multi30kData:
    max_train_pairs: int | None = setting(None, ge=1)
    max_test_pairs: int | None = setting(None, ge=1)
    valid: str = "val"
    test: str = "test_2016_flickr"


@dataclass
class BPEData:
    vocab_size: int = setting(8000, ge=10)
    character_coverage: float = setting(1.0, gt=0, le=1)
    input_sentence_size: int = setting(1000000, ge=1)


@dataclass
class UserProbe:
    """A probe corpus of the user's: a CoNLL-U file (UD tags; read as a word-level probe)."""

    conllu: str = REQUIRED
    max_sentences: int | None = setting(None, ge=1)


@dataclass
class DataConfig:
    brown: BrownData = field(default_factory=BrownData)
    lm: LMData = field(default_factory=LMData)
    ewt: Capped = field(default_factory=Capped)
    pud: Capped = field(default_factory=Capped)
    pmb: Capped = field(default_factory=Capped)
    multi30k: Multi30kData = field(default_factory=Multi30kData)
    bpe: BPEData = field(default_factory=BPEData)
    probes: dict[str, UserProbe] = field(default_factory=dict)  # name -> your CoNLL-U file
    preprocess_workers: int = setting(1, ge=1)
