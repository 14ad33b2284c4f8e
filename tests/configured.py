"""The settings as conf/ holds them, typed: the config files are the one place for their values
(the schema dataclasses have none), so tests read them here, composed once per process."""

from __future__ import annotations

import dataclasses
import functools

from conftest import compose
from omegaconf import DictConfig

from analysis.settings import AnalysisSettings, Claims, Learned, PlotSettings
from data_prep.settings import DataConfig
from pipeline.config import typed


@functools.cache
def composed() -> DictConfig:
    """The primary config (the `default` experiment), composed once per process."""
    return compose("mirror=null")


def analysis(**changes) -> AnalysisSettings:
    """conf/analysis as typed settings, with ``changes`` (whole fields) applied."""
    return dataclasses.replace(typed(composed().analysis, AnalysisSettings), **changes)


def plot(**changes) -> PlotSettings:
    """conf/plot as typed settings, with ``changes`` applied."""
    return dataclasses.replace(typed(composed().plot, PlotSettings), **changes)


def claims(**changes) -> Claims:
    """conf/analysis `claims`, with ``changes`` applied."""
    return dataclasses.replace(analysis().claims, **changes)


def learned(**changes) -> Learned:
    """conf/analysis `learned`, with ``changes`` applied."""
    return dataclasses.replace(analysis().learned, **changes)


def data(**changes) -> DataConfig:
    """conf/data as typed settings, with ``changes`` applied."""
    return dataclasses.replace(typed(composed().data, DataConfig), **changes)
