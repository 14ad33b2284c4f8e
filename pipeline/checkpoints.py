"""checkpoints.csv per model, and loading a checkpoint only after its sha256 is verified."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import pandas as pd

from data_prep.sources import sha256_file

CSV = "checkpoints.csv"
COLUMNS = ["step", "epoch", "epochs", "tokens_seen", "train_loss", "valid_loss", "valid_ppl", "lr",
           "bytes", "sha256", "file"]


class CheckpointError(RuntimeError):
    """A checkpoint is missing or no longer matches its recorded sha256."""


def content_hash(path: Path) -> str:
    """sha256 of a checkpoint file, or of a checkpoint directory (a Hugging Face revision):
    over its files' relative names and contents. Cached per process by size and mtime."""
    path = Path(path).resolve()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    if not files:
        raise CheckpointError(f"{path}: no checkpoint file or directory there")
    stats = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _hash(path, stats)


@functools.cache
def _hash(path: Path, stats: tuple) -> str:
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for name, _, _ in stats:
        h.update(f"{os.path.relpath(name, path)}\0{sha256_file(Path(name))}\n".encode())
    return h.hexdigest()


def read_table(model_dir: Path) -> pd.DataFrame:
    path = Path(model_dir) / CSV
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the model was not trained")
    return pd.read_csv(path)


def verify(model_dir: Path, steps: list[int] | None = None) -> pd.DataFrame:
    """Check every (or the given) checkpoint against checkpoints.csv; raise naming the path."""
    table = read_table(model_dir)
    rows = table if steps is None else table[table.step.isin(steps)]
    for row in rows.itertuples():
        path = Path(model_dir) / "checkpoints" / row.file
        if not path.exists():
            raise CheckpointError(f"{path}: checkpoint listed in {CSV} is missing")
        got = content_hash(path)
        if got != row.sha256:
            raise CheckpointError(f"{path}: sha256 {got} does not match {CSV} ({row.sha256}); "
                                  "the file changed after training: refusing to use it "
                                  "(force=[train] retrains the model)")
    return table


def checkpoint_path(model_dir: Path, step: int) -> Path:
    """The verified path of the analysis checkpoint at `step`."""
    table = verify(model_dir, [step])
    match = table[table.step == step]
    if match.empty:
        raise CheckpointError(f"{model_dir}: no checkpoint at step {step} "
                              f"(have {list(table.step)})")
    return Path(model_dir) / "checkpoints" / match.file.iloc[0]
