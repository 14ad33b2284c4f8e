"""The stages in their order, by name: what the runner, the planner and the schema read."""

from __future__ import annotations

from pipeline.stages import (
    aggregate,
    analyze,
    compress,
    extract,
    plot,
    prepare,
    stability,
    tickets,
    train,
    translate,
)
from pipeline.stages.stage import Stage

REGISTRY: dict[str, Stage] = {
    s.STAGE.name: s.STAGE for s in (prepare, train, extract, translate, compress, stability,
                                       tickets, analyze, plot, aggregate)}
