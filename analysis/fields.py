"""Schema fields with their allowed range, shared by the settings dataclasses and the model
presets' schemas (a module of its own, so that the code hash of a stage that only needs these
helpers does not change with the analysis settings)."""

from __future__ import annotations

from dataclasses import field
from typing import Any

# A field without a default must be set (OmegaConf reads "???" as a mandatory value).
REQUIRED: Any = "???"


def setting(default: Any = REQUIRED, **bounds):
    """A schema field with its allowed range or values (``ge``, ``gt``, ``le``, ``lt``,
    ``choices``; checked at start-up)."""
    return field(default=default, metadata=bounds)
