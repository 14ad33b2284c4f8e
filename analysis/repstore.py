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
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

STEP_DIR = re.compile(r"^step_(\d{7})$")
KINDS = ("act", "grad")


def step_dir(root: Path, step: int) -> Path:
    return Path(root) / f"step_{step:07d}"


def _atomic(path: Path, writer) -> None:
    """``writer(tmp)`` then rename onto ``path``: a reader never sees a partial file."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")  # the suffix kept (np.save adds one)
    writer(tmp)
    os.replace(tmp, path)


def write_tokens(root: Path, tokens: pd.DataFrame, layers: dict[str, dict]) -> None:
    """Write the token table and layer list (once per model and probe), each atomically."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _atomic(root / "tokens.parquet", lambda tmp: tokens.to_parquet(tmp, index=False))
    _atomic(root / "layers.json", lambda tmp: tmp.write_text(json.dumps(layers, indent=1)))


def open_array(path: Path, rows: int | None = None) -> np.ndarray:
    """A stored array, memory-mapped; errors name the file (a truncated .npy says only "mmap
    length is greater than file size")."""
    try:
        array = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing; rerun extract") from None
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"{path}: unreadable ({err}): truncated or not an array; rerun "
                         "extract (a cached one is validated and redone)") from err
    if rows is not None and len(array) != rows:
        raise ValueError(f"{path}: {len(array)} rows for {rows} tokens of its side")
    return array


def problems(root: Path, steps: list[int], gradients: bool) -> list[str]:
    """What is wrong with a store: unreadable token table or layer list, steps without their
    done marker, missing, truncated or misshapen arrays (empty when it is sound)."""
    root = Path(root)
    try:
        import pyarrow.parquet as pq

        n_tokens = pq.read_metadata(root / "tokens.parquet").num_rows
        info = layers(root)
        sides = tokens(root).side.value_counts()
    except Exception as err:  # noqa: BLE001  any unreadable part makes the store unusable
        return [f"{root}: token table or layers.json unreadable ({err})"]
    if n_tokens == 0:
        return [f"{root}/tokens.parquet: no tokens"]
    out = []
    for step in steps:
        folder = step_dir(root, step)
        if not (folder / "done").is_file():
            out.append(f"{folder}: missing or unfinished")
            continue
        for kind in ("act", "grad") if gradients else ("act",):
            for layer, meta in info.items():
                path = folder / kind / f"{layer}.npy"
                try:
                    a = open_array(path, int(sides.get(meta["side"], 0)))
                    if a.shape[1:] != (meta["dim"],):
                        out.append(f"{path}: shape {a.shape}, expected dim {meta['dim']}")
                except (OSError, ValueError) as err:
                    out.append(str(err))
    return out


def nonfinite(root: Path, chunk_rows: int = 65536) -> list[str]:
    """Every stored array of a store that holds NaN or inf, named with its count (one pass
    over the arrays, a chunk of rows at a time). A diverged model's values are kept, not
    redone: the analyses give NA rows for them."""
    found = []
    for path in sorted(Path(root).glob("step_*/*/*.npy")):
        array = open_array(path)
        bad = sum(int(array.size and (~np.isfinite(array[i:i + chunk_rows])).sum())
                  for i in range(0, len(array), chunk_rows))
        if bad:
            found.append(f"{path}: {bad} of {array.size} values are NaN or inf")
    return found


def write_arrays(root: Path, step: int, kind: str, arrays: dict[str, np.ndarray],
                 dtype: str = "float32") -> None:
    """Write one checkpoint's arrays of one kind; each file appears complete or not at all."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    folder = step_dir(root, step) / kind
    folder.mkdir(parents=True, exist_ok=True)
    for layer, array in arrays.items():
        _atomic(folder / f"{layer}.npy",
                lambda tmp, a=array: np.save(tmp, np.ascontiguousarray(a, dtype=dtype)))


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
    array = open_array(step_dir(root, step) / kind / f"{layer}.npy", len(rows))
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
