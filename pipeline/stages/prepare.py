"""The prepare stage: corpora to the tagged-sentence table, splits, vocabularies, fairseq bins
and the probe tables (the work is data_prep.prepare's, on the typed data settings)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from data_prep.prepare import prepare, user_probes
from data_prep.settings import DataConfig
from pipeline.config import typed
from pipeline.stages.stage import Stage

log = logging.getLogger(__name__)


def run(cfg: DictConfig, out: Path, inputs: dict) -> dict:
    """Stage function: the prepared data of ``cfg.data`` into ``out``."""
    summary = prepare(typed(cfg.data, DataConfig), out, cfg.mirror, cfg.cache_dir, cfg.download)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        log.info("corpus statistics (%s):\n%s", out.name, summary["stats"].to_string(index=False))
    return {"rows": len(summary["stats"])}


def files(cfg: DictConfig, spec: None) -> dict[str, str]:
    """The user's probe corpora by content: editing one re-prepares."""
    from data_prep.sources import sha256_file

    return {f"probe:{name}": sha256_file(Path(probe.conllu))
            for name, probe in user_probes(typed(cfg.data, DataConfig)).items()}


STAGE = Stage("prepare", ("data",), code=("pipeline.stages.prepare",), run=run, files=files)
