"""The learning-dynamics analysis as a whole: which table is computed from which store, in what
order, in how many processes, and the claims on the result; one seed's tables
(:func:`analyze_units`) and several seeds' pooled (:func:`across_seeds`). The tables themselves
are computed in analysis/tables/, one module per family.

Conventions, so that numbers stay comparable:
- Each (probe, side) gets one seeded token subsample (cap ``max_tokens``), the same rows for
  every model and checkpoint; per-tag subsets draw one common N per (probe, side).
- A representation's basis is computed once (full rank) and reused for every metric and pair.
- The reference ("final") checkpoint is the last one stored for that model and probe.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from analysis import claims, pooling, repstore
from analysis.runs import ModelRun, Probe, discover_runs
from analysis.settings import AnalysisSettings
from analysis.tables import bookkeeping, nmt
from analysis.tables import registry as T
from analysis.tables.compression import compression_tables
from analysis.tables.concentration import concentration_tables
from analysis.tables.convergence import over_training, reference_late_cka
from analysis.tables.per_tag import family_pooled, per_tag
from analysis.tables.replication import learned_layers
from analysis.tables.rows import concat, not_computed
from analysis.tables.sanity import (
    seed_to_seed,
    sensitivity,
    sensitivity_verdicts,
    token_count_sanity,
)
from analysis.tables.stability import stability_tables
from analysis.workers import process_pool

log = logging.getLogger(__name__)


def analyze_store(p: Probe, settings: AnalysisSettings, fams: Mapping[str, Probe]
                  ) -> dict[str, pd.DataFrame]:
    """Every over-training table of one (model, probe) store; ``fams`` maps each reference
    model (tagger) to its store on the same probe."""
    tables = over_training(p, settings, fams)
    tables[T.PER_TAG] = per_tag(p, settings)
    tables[T.FAMILY] = family_pooled(tables[T.PER_TAG])
    tables[T.SENSITIVITY] = sensitivity(p, settings)
    tables[T.CONCENTRATION], tables[T.FUNCTION_CONTENT] = concentration_tables(p, settings)
    log.info("analyzed %s/%s (%d checkpoints)", p.run.name, p.name, len(p.steps))
    return tables


def analyze(runs: Sequence[ModelRun], settings: AnalysisSettings, progress: bool = True,
            workers: int = 1) -> dict[str, pd.DataFrame]:
    """Every table of the given models' stores, S1 and the bookkeeping tables.

    Every model that is not a reference gets the analyses over training (convergence, layer
    matrices, per-tag, concentration), and is compared with every reference (tagger) extracted
    on the same probe tokens. Stores are independent: ``workers`` processes analyse them side
    by side.
    """
    opened: dict[tuple[str, str], Probe] = {}
    for run in runs:
        for probe in run.stores:
            p = Probe.open(run, probe)
            if not p.steps:
                log.warning("%s/%s: no complete checkpoint stored; skipped", run.name, probe)
                continue
            opened[(run.name, probe)] = p
    taggers = [r for r in runs if r.reference]
    todo = [p for p in opened.values() if not p.run.reference]
    fams = [{t.name: opened[(t.name, p.name)] for t in taggers if (t.name, p.name) in opened}
            for p in todo]
    jobs = (todo, [settings] * len(todo), fams)
    bar = {"total": len(todo), "desc": "analyze", "unit": "store", "disable": not progress}
    if workers > 1 and len(todo) > 1:
        with process_pool(min(workers, len(todo)), "spawn") as pool:
            results = list(tqdm(pool.map(analyze_store, *jobs), **bar))
    else:
        results = list(tqdm(map(analyze_store, *jobs), **bar))
    out: dict[str, list[pd.DataFrame]] = {}
    for result in results:
        for name, table in result.items():
            out.setdefault(name, []).append(table)
    tables = {name: concat(parts) for name, parts in out.items()}
    tables[T.SANITY_TOKENS] = token_count_sanity(settings, _sanity_probe(opened, settings))
    tables[T.CHECKPOINTS] = bookkeeping.checkpoint_table(runs)
    tables[T.SIZES] = bookkeeping.sizes_table(list(opened.values()), settings)
    for t in tables.values():  # the model seed is `seed`; this one chose tokens and shuffles
        t["analysis_seed"] = settings.seed
    tables[T.SETTINGS] = bookkeeping.settings_table(settings)
    return tables


def _sanity_probe(opened: Mapping[tuple[str, str], Probe], settings: AnalysisSettings
                  ) -> Probe | None:
    """The store S1's init-vs-final curve uses: the configured model (else the first model
    over training that reads a word stream)."""
    for (name, _), p in opened.items():
        if name == settings.sanity.model or (settings.sanity.model is None and not
                                             p.run.reference and "lm" in p.layers):
            return p
    return None


def analyze_units(extract_units: Mapping[str, Path], train_units: Mapping[str, Path],
                  translate_units: Mapping[str, Path], seed: int, settings: AnalysisSettings,
                  workers: int = 1, compress_units: Mapping[str, Path] | None = None,
                  stability_units: Mapping[str, Path] | None = None,
                  tickets_units: Mapping[str, Path] | None = None,
                  threshold: float = float("nan")) -> dict[str, pd.DataFrame]:
    """One seed's every table from its extract, train, translate, compress, stability and
    tickets units (model -> unit directory): the stores' tables, the NMT stages, compression,
    stability (W_k stable at the relative barrier ``threshold``) and tickets, the models and
    the claims."""
    runs = discover_runs(extract_units, train_units, seed)
    for found in (f for run in runs for root in run.stores.values()
                  for f in repstore.nonfinite(root)):
        log.warning("%s: the rows that use it are NA", found)
    log.info("analyzing %d models: %s", len(runs), ", ".join(r.name for r in runs))
    tables = analyze(runs, settings, progress=True, workers=workers)
    tables.update(nmt.translation_tables(translate_units, seed, settings))
    tables.update(compression_tables(compress_units or {}, seed, settings))
    tables.update(stability_tables(stability_units or {}, tickets_units or {}, train_units,
                                   extract_units, seed, settings, threshold))
    late = pd.concat([tables.get(T.CONVERGENCE, pd.DataFrame()),
                      reference_late_cka(runs, settings)], ignore_index=True)
    tables[T.MODELS] = bookkeeping.models_table(runs, train_units, extract_units,
                                                settings.learned, late)
    for row in not_computed(tables).itertuples():
        log.warning("%s: %d of %d %s rows not computed, e.g. %s", row.table, row.rows, row.of,
                    row.metric, row.example)
    commit = claims.commit_events(tables, settings.claims)
    if len(commit):
        tables[T.COMMIT] = commit
    tables[T.CLAIMS] = claims.evaluate(tables, settings.claims)
    tables[T.CLAIMS_SUMMARY] = claims.summarize(tables[T.CLAIMS])
    tables[T.ANSWER] = claims.answer(tables[T.CLAIMS], settings.claims)
    tables[T.SENSITIVITY_SUMMARY] = sensitivity_verdicts(
        tables.get(T.SENSITIVITY, pd.DataFrame()), settings)
    return tables


def across_seeds(seed_tables: Sequence[Mapping[str, pd.DataFrame]],
                 seed_units: Mapping[int, Mapping[str, Mapping[str, Path]]],
                 settings: AnalysisSettings, level: float) -> dict[str, pd.DataFrame]:
    """Several seeds' tables pooled (pooling.aggregate), with S2 from their extract units
    (``seed_units``: seed -> {"extract": ..., "train": ...}) and S4's seed test."""
    pooled = pooling.aggregate(seed_tables, settings.claims, level)
    probes = []
    for seed, units in sorted(seed_units.items()):
        for run in discover_runs(units["extract"], units["train"], seed):
            probes += [p for p in (Probe.open(run, probe) for probe in run.stores) if p.steps]
    pooled[T.SEEDS] = seed_to_seed(probes, settings)
    pooled[T.LEARNED_LAYERS] = learned_layers(
        pooled[T.SEEDS], [t.get(T.CONVERGENCE) for t in seed_tables], settings)
    pooled[T.SENSITIVITY_SUMMARY] = sensitivity_verdicts(
        pooled.get(T.SENSITIVITY, pd.DataFrame()), settings, pooled[T.SEEDS],
        pooled.get(T.CONVERGENCE))
    return pooled
