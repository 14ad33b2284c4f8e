"""The representation store shared by extraction (writer) and the analyses (reader).

Layout of one (model, probe) directory:

    tokens.parquet                  one row per token position, the same for every checkpoint
    layers.json                     layer name -> {"side": ..., "dim": ...}, in depth order
    step_XXXXXXX/act/<layer>.npy    activations, tokens × dim (rows of that layer's side)
    step_XXXXXXX/grad/<layer>.npy   d(token's own loss)/d(activation), same shape

Layers read one side of the data (`lm` for LMs and taggers; `source`/`target` for NMT), and
their rows are the tokens.parquet rows of that side, in order.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

STEP_DIR = re.compile(r"^step_(\d{7})$")
KINDS = ("act", "grad")


def step_dir(root: Path, step: int) -> Path:
    return Path(root) / f"step_{step:07d}"


def write_tokens(root: Path, tokens: pd.DataFrame, layers: dict[str, dict]) -> None:
    """Write the token table and layer list (once per model and probe)."""
    Path(root).mkdir(parents=True, exist_ok=True)
    tokens.to_parquet(Path(root) / "tokens.parquet", index=False)
    (Path(root) / "layers.json").write_text(json.dumps(layers, indent=1))


def write_arrays(root: Path, step: int, kind: str, arrays: dict[str, np.ndarray],
                 dtype: str = "float32") -> None:
    """Write one checkpoint's arrays of one kind; each file appears complete or not at all."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    folder = step_dir(root, step) / kind
    folder.mkdir(parents=True, exist_ok=True)
    for layer, array in arrays.items():
        tmp = folder / f".{layer}.tmp.npy"
        np.save(tmp, np.ascontiguousarray(array, dtype=dtype))
        tmp.replace(folder / f"{layer}.npy")


def layers(root: Path) -> dict[str, dict]:
    return json.loads((Path(root) / "layers.json").read_text())


def steps(root: Path) -> list[int]:
    """The checkpoints stored for this model and probe."""
    return sorted(int(m.group(1)) for p in Path(root).iterdir() if (m := STEP_DIR.match(p.name)))


def tokens(root: Path, side: str | None = None) -> pd.DataFrame:
    table = pd.read_parquet(Path(root) / "tokens.parquet")
    if side is not None:
        table = table[table.side == side].reset_index(drop=True)
    return table


def load(root: Path, step: int, layer: str, kind: str = "act", tag: str | None = None,
         tag_column: str = "pos", pool: str | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """The array (memory-mapped unless pooled or filtered) and the matching token rows.

    `tag` keeps the rows whose `tag_column` equals it; `pool` ("first", "last", "mean") turns
    subword rows into one row per word, the same way at every checkpoint.
    """
    info = layers(root)
    if layer not in info:
        raise KeyError(f"{root}: no layer {layer!r}; have {list(info)}")
    rows = tokens(root, info[layer]["side"])
    array = np.load(step_dir(root, step) / kind / f"{layer}.npy", mmap_mode="r")
    if len(array) != len(rows):
        raise ValueError(f"{root} step {step} {layer}: {len(array)} rows for {len(rows)} tokens")
    if pool is not None:
        array, rows = pool_words(array, rows, pool)
    if tag is not None:
        keep = (rows[tag_column] == tag).to_numpy()
        array, rows = array[keep], rows[keep].reset_index(drop=True)
    return array, rows


def pool_words(array: np.ndarray, rows: pd.DataFrame, how: str) -> tuple[np.ndarray, pd.DataFrame]:
    """One row per word: its first subword, its last, or the mean of its subwords."""
    word = (rows.sent_index.astype(np.int64) * 100_000 + rows.word_index).to_numpy()
    starts = np.flatnonzero(np.r_[True, word[1:] != word[:-1]])
    if how == "first":
        pick = starts
    elif how == "last":
        pick = np.r_[starts[1:] - 1, len(word) - 1]
    elif how == "mean":
        sums = np.add.reduceat(np.asarray(array, dtype=np.float64), starts, axis=0)
        counts = np.diff(np.r_[starts, len(word)])[:, None]
        return (sums / counts).astype(array.dtype), rows.iloc[starts].reset_index(drop=True)
    else:
        raise ValueError(f"pool must be first, last or mean, got {how!r}")
    return np.asarray(array[pick]), rows.iloc[pick].reset_index(drop=True)
