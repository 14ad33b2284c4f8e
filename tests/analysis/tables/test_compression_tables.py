"""analysis.tables.compression and the C6 claims on constructed compress rows whose k*, s* and
statistics follow from the construction."""

import numpy as np
import pandas as pd
import pytest

from analysis.claims.c6 import claims_c6
from analysis.claims.rows import FAIL, NA, PASS
from analysis.compression import OVER_TRAINING, REFERENCE
from analysis.tables.compression import LOG2_K, SPARSITY, summarize
from tests.configured import composed

TOL = 0.05


def settings():
    from analysis.settings import AnalysisSettings
    from pipeline.config import typed

    return typed(composed().analysis, AnalysisSettings)


def projection_rows(model, step, share, layer, dim, method, changes, role=OVER_TRAINING):
    """Rows of a layer whose relative change at k = 2**i is changes[i] (ppl, reference 100)."""
    ks = [2 ** i for i in range(len(changes))]
    return [dict(model=model, role=role, step=step, share=share, compress="projection",
                 layer=layer, side="lm", dim=dim, method=method, k=k, sparsity=np.nan,
                 measure="valid_ppl", primary=True, value=100.0 * (1 + c), reference=100.0,
                 higher_better=False, fit_probe="brown_probe", fit_tokens=1000)
            for k, c in zip(ks, changes, strict=True)]


def pruning_rows(model, step, share, method, changes, role=OVER_TRAINING):
    sparsities = [0.1 * (i + 1) for i in range(len(changes))]
    return [dict(model=model, role=role, step=step, share=share, compress="pruning", layer="",
                 side="", dim=np.nan, method=method, k=np.nan, sparsity=s, measure="valid_ppl",
                 primary=True, value=100.0 * (1 + c), reference=100.0, higher_better=False,
                 fit_probe="brown_probe", fit_tokens=np.nan)
            for s, c in zip(sparsities, changes, strict=True)]


def table(rows) -> pd.DataFrame:
    t = pd.DataFrame(rows)
    secondary = t.assign(measure="bleu", primary=False, value=0.0)  # never read for k*
    return pd.concat([t, secondary], ignore_index=True).assign(seed=1)


def test_summary_reads_the_primary_measure_and_includes_sparsity_zero():
    rows = table(projection_rows("lm", 10, 1.0, "l1", 16, "pca", [1.0, 0.5, 0.3, 0.0, 0.0])
                 + pruning_rows("lm", 10, 1.0, "magnitude", [0.2, 0.4]))
    s = summarize(rows, TOL).set_index("compress")
    assert s.loc["projection", "star_grid"] == 8
    assert s.loc["projection", "star"] == pytest.approx(2 + (0.3 - TOL) / 0.3)
    assert s.loc["projection", "unit"] == LOG2_K
    # no sparsity is within: s* is 0, the unpruned model (the grid's first point)
    assert s.loc["pruning", "star_grid"] == 0.0
    assert s.loc["pruning", "star"] == pytest.approx(0.1 * TOL / 0.2)
    assert s.loc["pruning", "unit"] == SPARSITY


def summary_of(rows) -> pd.DataFrame:
    return summarize(table(rows), TOL).assign(seed=1)


def by_claim(rows):
    out = pd.DataFrame(claims_c6(summary_of(rows), settings().claims))
    return {(r.claim, r.scope, r.metric): r for r in out.itertuples()}


def test_c6_is_the_smaller_of_the_two_margins_and_skips_references():
    # k* = 4 of 64 for svcca (log2: 2), 32 for random (5): min(log2 32 - 2, 5 - 2) = 3
    rows = (projection_rows("lm", 100, 1.0, "l1", 64, "svcca", [1, 1, 0, 0, 0, 0, 0])
            + projection_rows("lm", 100, 1.0, "l1", 64, "random", [1, 1, 1, 1, 1, 0, 0])
            # pca at k* = 32 = D/2: min(0, 0) = 0 fails the smallest effect
            + projection_rows("lm", 100, 1.0, "l1", 64, "pca", [1, 1, 1, 1, 1, 0, 0])
            + projection_rows("tag", 100, 1.0, "l1", 64, "svcca", [1, 1, 1, 1, 1, 1, 0],
                              role=REFERENCE)
            + projection_rows("tag", 100, 1.0, "l1", 64, "random", [1, 1, 1, 1, 1, 1, 0],
                              role=REFERENCE))
    c = by_claim(rows)
    assert c["C6", "layer=l1", "svcca"].value == pytest.approx(3.0)
    assert c["C6", "layer=l1", "svcca"].verdict == PASS
    assert c["C6", "layer=l1", "pca"].value == pytest.approx(0.0)
    assert c["C6", "layer=l1", "pca"].verdict == FAIL
    assert {r.model for r in c.values()} == {"lm"}


def test_c6b_compares_the_checkpoint_nearest_mid_with_the_last():
    # k* 16 at share 0.5 (log2 4), 4 at the end (log2 2): falls by 2 doublings
    rows = (projection_rows("lm", 50, 0.25, "l1", 32, "pca", [1, 1, 1, 1, 1, 0])
            + projection_rows("lm", 100, 0.5, "l1", 32, "pca", [1, 1, 1, 1, 0, 0])
            + projection_rows("lm", 200, 1.0, "l1", 32, "pca", [1, 1, 0, 0, 0, 0]))
    c = by_claim(rows)
    r = c["C6b", "layer=l1", "pca"]
    assert r.value == pytest.approx(2.0) and r.verdict == PASS
    single = by_claim(projection_rows("lm", 200, 1.0, "l1", 32, "pca", [1, 0, 0, 0, 0, 0]))
    assert single["C6b", "layer=l1", "pca"].verdict == NA


def test_c6c_is_the_rise_of_s_star_from_the_first_to_the_last_checkpoint():
    rows = (pruning_rows("lm", 50, 0.25, "magnitude", [0.0, 1.0, 1.0])     # s* = 0.1 exactly
            + pruning_rows("lm", 200, 1.0, "magnitude", [0.0, 0.0, 0.0]))  # s* = 0.3
    r = by_claim(rows)["C6c", "weights", "magnitude"]
    first = 0.1 + (TOL - 0.0) / (1.0 - 0.0) * 0.1
    assert r.value == pytest.approx(0.3 - first)
    assert r.verdict == PASS


def test_the_synthetic_study_holds_c6_and_the_reversed_one_does_not():
    from synthstudy import reversed_claims, study_claims

    for claims, verdict in ((study_claims(), PASS), (reversed_claims(), FAIL)):
        c6 = claims[claims.claim.str.startswith("C6")]
        primary = {"C6": "svcca", "C6b": "pca", "C6c": "magnitude"}
        for claim, metric in primary.items():
            rows = c6[(c6.claim == claim) & (c6.metric == metric)]
            assert len(rows) and (rows.verdict == verdict).all(), (claim, rows.detail.tolist())
