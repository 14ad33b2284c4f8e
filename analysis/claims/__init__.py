"""The papers' claims, checked on the analysis tables: the statistic of every unit
(analysis.claims.units, analysis.claims.c5), then the verdicts across seeds
(analysis.claims.seeds). Definitions, smallest effects and α are in the config
(``analysis.claims``), fixed before any result was looked at.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from analysis.claims.c5 import claim_c5
from analysis.claims.c6 import claims_c6
from analysis.claims.c7 import claims_c7, commit_events
from analysis.claims.rows import CLAIM_COLUMNS, CLAIMS, FAIL, NA, PASS, statement
from analysis.claims.seeds import answer, seeds_sentence
from analysis.claims.units import (
    claim_c1,
    claim_c2,
    claim_c2b,
    claim_c3,
    claim_c4,
)
from analysis.settings import Claims
from analysis.tables import registry as T


def evaluate(tables: Mapping[str, pd.DataFrame], cs: Claims) -> pd.DataFrame:
    """Every claim on every unit and metric (one row each, columns CLAIM_COLUMNS); rows whose
    metric could not be computed (``na_reason``) are left out."""
    empty = pd.DataFrame()
    tables = {name: t[t.na_reason.isna()] if "na_reason" in t else t
              for name, t in tables.items()}
    # the claims read similarities (higher = more alike); distances are reported only
    tables = {name: t[t.metric_kind != "distance"] if "metric_kind" in t else t
              for name, t in tables.items()}
    conv = tables.get(T.CONVERGENCE, empty)
    metrics = sorted(conv.metric.unique()) if len(conv) else []
    family, tagger = tables.get(T.FAMILY, empty), tables.get(T.TAGGER, empty)
    rows = []
    if len(conv):
        rows += claim_c1(conv, cs)
    rows += claim_c2(family, cs, metrics, tables.get(T.PER_TAG))
    rows += claim_c2(family, cs, metrics, tables.get(T.PER_TAG), other="random")
    rows += claim_c2b(tagger, cs)
    rows += claim_c3(tagger, cs)
    rows += claim_c4(tables.get(T.FUNCTION_CONTENT, empty), cs)
    rows += claim_c5(tables, cs)
    rows += claims_c6(tables.get(T.COMPRESSION_SUMMARY), cs)
    rows += claims_c7(tables, cs)
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def summarize(claims: pd.DataFrame) -> pd.DataFrame:
    """Per claim and metric: units passing (at the smallest effect of interest), failing and
    not evaluable: the detail under the verdicts."""
    rows = []
    for (claim, metric), g in claims.groupby(["claim", "metric"], sort=True):
        rows.append(dict(claim=claim, metric=metric, statement=statement(claim),
                         n_pass=int((g.verdict == PASS).sum()),
                         n_fail=int((g.verdict == FAIL).sum()),
                         n_na=int((g.verdict == NA).sum())))
    return pd.DataFrame(rows, columns=["claim", "metric", "statement", "n_pass", "n_fail",
                                       "n_na"])


__all__ = ["CLAIMS", "CLAIM_COLUMNS", "answer", "claim_c1", "claim_c2", "claim_c2b",
           "claim_c3", "claim_c4", "claim_c5", "claims_c6", "claims_c7", "commit_events",
           "evaluate", "seeds_sentence", "statement", "summarize"]
