"""The bookkeeping tables: every model's checkpoints, the data sizes, the settings, and one row
per model with its training, evaluation and whether it has learned."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import repstore
from analysis.learned import endpoint, late_cka, learned
from analysis.runs import ModelRun, Probe
from analysis.settings import AnalysisSettings, Learned, flat


def checkpoint_table(runs: Sequence[ModelRun]) -> pd.DataFrame:
    """Steps of every model with epoch, tokens seen, losses and the fraction of training."""
    parts = []
    for run in runs:
        t = run.checkpoints.copy()
        t.insert(0, "model", run.name)
        t.insert(1, "kind", run.kind)
        t.insert(2, "seed", run.seed)
        t["fraction"] = t.step / t.step.max()
        parts.append(t.drop(columns=[c for c in ("sha256", "file", "bytes") if c in t]))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def settings_table(settings: AnalysisSettings) -> pd.DataFrame:
    """The settings as dotted keys with JSON values (for the report and the figures)."""
    return pd.DataFrame(sorted(flat(settings).items()), columns=["key", "value"])


def sizes_table(probes: Sequence[Probe], settings: AnalysisSettings) -> pd.DataFrame:
    """Data sizes per model, probe and layer: dims, tokens stored and used, checkpoints."""
    rows = []
    for p in probes:
        info = repstore.layers(p.root)
        for side, layers in p.layers.items():
            for layer in layers:
                rows.append(dict(model=p.run.name, kind=p.run.kind, seed=p.run.seed,
                                 probe=p.name, side=side, layer=layer, dim=info[layer]["dim"],
                                 n_tokens=len(p.tokens[side]),
                                 n_used=len(p.sample(side, settings)), n_steps=len(p.steps),
                                 final_step=p.final))
    return pd.DataFrame(rows)



def models_table(runs: Sequence[ModelRun], train_units: Mapping[str, Path],
                 extract_units: Mapping[str, Path], criteria: Learned,
                 convergence: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per model: kind, family, role, seed, training length, its evaluation and
    whether it has learned by the criteria fixed in config (analysis.learned)."""
    rows = []
    for run in runs:
        c = run.checkpoints.sort_values("step")
        unit = Path(train_units[run.name])
        metrics = json.loads((unit / "eval.json").read_text())
        source = (json.loads((unit / "source.json").read_text())["source"]
                  if (unit / "source.json").is_file() else "trained by this pipeline")
        manifest = json.loads((Path(extract_units[run.name]) / "model.json").read_text())
        rows.append(dict(model=run.name, kind=run.kind, family=run.family, source=source,
                         subword=manifest.get("subword"),
                         reference=run.reference, seed=run.seed, checkpoints=len(c),
                         final_step=int(c.step.iloc[-1]),
                         epochs=float(c.epochs.iloc[-1]) if "epochs" in c else np.nan,
                         final_valid_ppl=float(c.valid_ppl.iloc[-1]), **metrics,
                         **learned(c, metrics, criteria), **endpoint(c, criteria),
                         **late_cka(convergence, run.name, criteria)))
    return pd.DataFrame(rows)
