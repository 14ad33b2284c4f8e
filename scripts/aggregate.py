"""Pool several seeds' analyze tables: mean and 95% CI per row, figures with CI bands, claims.

    python scripts/aggregate.py ARTIFACTS_DIR [--experiment NAME] [--out DIR] [--formats png pdf]

Finds every finished analyze stage under ARTIFACTS_DIR/<experiment>/analyze/<key>/tables, pools
the ones whose settings agree (apart from the seed), and writes to OUT (default
ARTIFACTS_DIR/<experiment>/aggregate/): tables/*.parquet|csv where each row carries the mean over
seeds, ci_low/ci_high (t-interval, 95%) and n_seeds; the figures, drawn with CI bands; the
claims evaluated on every seed (pass counts, mean statistic and its CI) and on the mean curves;
and report.md / report.html. Besides the tables, only the final (and first) checkpoints'
representations are read, for S2: each model against itself trained with another seed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
PLOT_CONFIG = REPO / "conf" / "plot" / "default.yaml"
sys.path.insert(0, str(REPO))

from analysis import claims, dynamics, figures  # noqa: E402
from pipeline.plot_stage import load_tables, render  # noqa: E402

log = logging.getLogger("aggregate")

# Per table: the columns averaged over seeds (the first one gets the CI), and columns that
# differ between seeds without being results worth pooling (dropped).
VALUES = {
    "convergence": (["value", "baseline", "k_a", "k_b"], ["baseline_std"]),
    "tagger": (["value", "baseline", "k_a", "k_b"], ["baseline_std"]),
    "layer_matrix": (["value", "k_a", "k_b"], ["baseline", "baseline_std"]),
    "per_tag": (["value", "baseline", "k_a", "k_b", "ref_init"], ["baseline_std"]),
    "family": (["value", "baseline", "k_a", "k_b"], ["baseline_std"]),
    "intrinsic_dim": (["k", "k_s2", "k_s", "rank"], []),
    "concentration": (["mean", "median"], ["ci_low", "ci_high", "n_nan"]),
    "function_content": (["difference"], ["ci_low", "ci_high"]),
    "sanity_tokens": (["value", "baseline", "k_a", "k_b"], ["baseline_std"]),
    "checkpoints": (["train_loss", "valid_loss", "valid_ppl"], []),
}
FIRST_SEED = ("sizes", "settings")


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the t-distribution confidence interval of the mean (NaN for one value)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.nan, np.nan, np.nan
    mean = float(v.mean())
    if v.size < 2:
        return mean, np.nan, np.nan
    half = stats.t.ppf((1 + level) / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return mean, mean - half, mean + half


def pool(df: pd.DataFrame, value_columns: list[str], drop: list[str] = ()) -> pd.DataFrame:
    """Mean over seeds of ``value_columns`` for every row key (all other columns); the first
    value column also gets ci_low, ci_high (t-interval, 95%); n_seeds counts each row's seeds."""
    values = [c for c in value_columns if c in df]
    if not values:
        raise ValueError(f"none of {value_columns} in the table's columns {list(df.columns)}")
    keys = [c for c in df.columns if c not in values and c not in drop and c != "seed"]
    g = df.groupby(keys, dropna=False, sort=False)
    out = g[values].mean()
    first = g[values[0]]
    n, sd = first.count(), first.std(ddof=1)
    half = stats.t.ppf(0.975, (n - 1).clip(lower=1)) * sd / np.sqrt(n)
    out["ci_low"], out["ci_high"] = out[values[0]] - half, out[values[0]] + half
    out["n_seeds"] = g["seed"].nunique() if "seed" in df else n
    out = out.reset_index()
    out.insert(0, "seed", "mean")
    return out


def pool_claims(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Claims over seeds: mean statistic with its CI and how many seeds pass."""
    keys = ["claim", "model", "probe", "scope", "metric", "statistic", "threshold"]
    rows = []
    for key, g in per_seed.groupby(keys, dropna=False, sort=True):
        mean, low, high = t_interval(g.value.to_numpy())
        rows.append(dict(zip(keys, key, strict=True), value=mean, ci_low=low, ci_high=high,
                         n_seeds=g.seed.nunique(), n_pass=int((g.verdict == "PASS").sum()),
                         n_fail=int((g.verdict == "FAIL").sum())))
    return pd.DataFrame(rows)


def find_runs(artifacts: Path, experiment: str | None) -> dict[str, list[Path]]:
    """Finished analyze stages' table folders per experiment, oldest first."""
    found: dict[str, list[tuple[str, Path]]] = {}
    for tables in sorted(artifacts.glob("*/analyze/*/tables")):
        stage = tables.parent
        if stage.name.endswith(".partial") or not (stage / ".done.json").is_file():
            continue
        name = stage.parents[1].name
        if experiment in (None, name):
            finished = json.loads((stage / ".done.json").read_text()).get("finished", "")
            found.setdefault(name, []).append((finished, tables))
    return {name: [t for _, t in sorted(runs)] for name, runs in found.items()}


def one_run_per_seed(members: list[tuple[Path, dict]]) -> list[tuple[Path, dict]]:
    """The newest analyze run of each seed (an earlier run of the same seed, e.g. before a
    config change, would otherwise count twice); ``members`` are oldest first."""
    latest: dict[tuple, tuple[Path, dict]] = {}
    for folder, tables in members:
        seeds = tuple(sorted(int(s) for s in tables["checkpoints"].seed.unique()))
        if seeds in latest:
            log.info("seed %s: %s replaces the older run %s", seeds, folder, latest[seeds][0])
        latest[seeds] = (folder, tables)
    return list(latest.values())


def settings_key(tables: dict[str, pd.DataFrame]) -> tuple:
    s = tables.get("settings", pd.DataFrame(columns=["key", "value"]))
    return tuple(sorted((k, v) for k, v in zip(s.key, s.value, strict=True) if k != "seed"))


def aggregate(runs: list[dict[str, pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    """Pooled tables (with pooled claims) from several seeds' tables."""
    out = {}
    for name, (values, drop) in VALUES.items():
        parts = [t[name] for t in runs if name in t and len(t[name])]
        if parts:
            out[name] = pool(pd.concat(parts, ignore_index=True), values, list(drop))
    for name in FIRST_SEED:
        if name in runs[0]:
            out[name] = runs[0][name]
    per_seed = pd.concat([t["claims"] for t in runs if "claims" in t], ignore_index=True)
    if len(per_seed):
        out["claims_over_seeds"] = pool_claims(per_seed)
    cs = claims.settings_from_table(out.get("settings"))
    out["claims"] = claims.evaluate(out, cs)  # on the mean curves
    out["claims_summary"] = claims.summarize(out["claims"])
    return out


def seed_table(folders: list[Path]) -> pd.DataFrame:
    """S2 rows (dynamics.seed_to_seed) from the extract stages behind these analyze runs, with
    the first run's analysis settings; empty with fewer than two seeds."""
    probes, settings = [], None
    for tables_dir in folders:
        stage = tables_dir.parent
        done = json.loads((stage / ".done.json").read_text())
        root = stage.parents[1]  # <artifacts>/<experiment>
        extract_dir = root / "extract" / done["inputs"]["extract"]
        train_dir = root / "train" / done["inputs"]["train"]
        train = json.loads((train_dir / ".done.json").read_text())["config"]
        if settings is None:
            settings = dynamics.Settings.from_mapping(done["config"]["analysis"],
                                                      seed=int(train["seed"]))
        for run in dynamics.discover_runs(extract_dir, train_dir, train["model"],
                                          int(train["seed"])):
            probes += [dynamics.Probe.open(run, probe) for probe in run.stores]
    if settings is None or len({p.run.seed for p in probes}) < 2:
        return pd.DataFrame()
    return dynamics.seed_to_seed([p for p in probes if p.steps], settings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", type=Path)
    parser.add_argument("--experiment", default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--formats", nargs="+", default=["png", "pdf"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    found = find_runs(args.artifacts, args.experiment)
    if not found:
        raise SystemExit(f"no finished analyze stage under {args.artifacts}")
    for name, folders in found.items():
        groups: dict[tuple, list[tuple[Path, dict]]] = {}
        for folder in folders:
            tables = load_tables(folder)
            groups.setdefault(settings_key(tables), []).append((folder, tables))
        for i, members in enumerate(groups.values()):
            members = one_run_per_seed(members)
            group = [tables for _, tables in members]
            seeds = sorted({int(s) for t in group for s in t["checkpoints"].seed.unique()})
            out = args.out or args.artifacts / name / "aggregate"
            out = out / f"settings_{i}" if len(groups) > 1 else out
            log.info("%s: pooling %d analyze runs (seeds %s) into %s", name, len(group), seeds,
                     out)
            pooled = aggregate(group)
            seeds_table = seed_table([folder for folder, _ in members])
            if len(seeds_table):
                pooled["seeds"] = seeds_table
            (out / "tables").mkdir(parents=True, exist_ok=True)
            for tname, table in pooled.items():
                table.to_parquet(out / "tables" / f"{tname}.parquet", index=False)
                table.to_csv(out / "tables" / f"{tname}.csv", index=False)
            plot_cfg = OmegaConf.to_container(OmegaConf.load(PLOT_CONFIG), resolve=True)
            ps = figures.PlotSettings.from_mapping({**plot_cfg, "formats": args.formats})
            render(pooled, out, ps, f"Learning dynamics: '{name}', mean over seeds {seeds}")


if __name__ == "__main__":
    main()
