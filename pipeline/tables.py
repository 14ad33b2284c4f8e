"""A stage's tables on disk: every table as parquet (what later stages read) and csv (for
people), one file pair per table name."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def write_tables(folder: Path, tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Each table as parquet and csv; returns rows per table."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name, table in sorted(tables.items()):
        table.to_parquet(folder / f"{name}.parquet", index=False)
        table.to_csv(folder / f"{name}.csv", index=False)
        rows[name] = len(table)
    return rows


def load_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """Every table of an analyze stage (name -> DataFrame)."""
    paths = sorted(Path(folder).glob("*.parquet"))
    if not paths:
        raise FileNotFoundError(f"no tables in {folder}: run the analyze stage first")
    return {p.stem: pd.read_parquet(p) for p in paths}
