"""How a stage that measures BLEU decodes: the translate config's values, interpolated into its
own group (compress, stability, tickets), so every BLEU in the pipeline decodes alike."""

from __future__ import annotations

from dataclasses import dataclass

from analysis.fields import setting


@dataclass
class Decoding:
    """Beam, length limits and batch size of a decode (the translate stage's)."""

    beam: int = setting(ge=1)
    max_len_a: float = setting(ge=0)
    max_len_b: int = setting(ge=1)
    batch_size: int = setting(ge=1)
