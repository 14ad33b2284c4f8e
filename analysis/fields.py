"""Schema fields with their allowed range and help, shared by the settings dataclasses and the
model presets' schemas (a module of its own, so that the code hash of a stage that only needs
these helpers does not change with the analysis settings)."""

from __future__ import annotations

from dataclasses import field
from typing import Any

# A field without a default must be set (OmegaConf reads "???" as a mandatory value): the
# config groups' values are in their YAML files, never here.
REQUIRED: Any = "???"


def setting(default: Any = REQUIRED, help: str = "", **bounds):
    """A schema field with its allowed range or values (``ge``, ``gt``, ``le``, ``lt``,
    ``choices``; checked at start-up) and a line of ``help`` (quoted when a value is refused).
    Config groups give no ``default``: their YAML file holds the value."""
    return field(default=default, metadata={**bounds, "help": help})
