"""The models and probe stores an analysis reads: each extract unit's model (model.json), its
checkpoint table, and per probe the token table, layers and arrays, with the seeded token
subsamples every model and checkpoint share."""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import repstore
from analysis.settings import AnalysisSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelRun:
    """One trained model as its extraction describes it (model.json): kind and family (labels
    only), whether it is a reference (a tagger, compared in its trained state), the tag set of
    a tagger, its seed (and the offset its initialisation seed has from it), its checkpoints
    table (step, epoch, tokens_seen, valid_loss, ...) and its store per probe. A tagger with the
    model's seed offset and family starts from the model's exact initial weights (shared_init
    in the comparison rows): the control for that confound."""

    name: str
    kind: str
    seed: int
    checkpoints: pd.DataFrame
    stores: Mapping[str, Path]
    tags: str | None = None
    reference: bool = False
    family: str = ""
    seed_offset: int = 0  # added to the run seed for its fairseq seed (initialisation)


def discover_runs(extract_units: Mapping[str, Path], train_units: Mapping[str, Path],
                  seed: int) -> list[ModelRun]:
    """The models of the extract units (<unit>/model.json, <unit>/<probe>/) with their
    checkpoint tables (<train unit>/checkpoints.csv)."""
    runs = []
    for name, unit in extract_units.items():
        info = json.loads((Path(unit) / "model.json").read_text())
        stores = {p.name: p for p in sorted(Path(unit).iterdir())
                  if (p / "tokens.parquet").is_file()}
        table = pd.read_csv(Path(train_units[name]) / "checkpoints.csv")
        runs.append(ModelRun(name, str(info["kind"]), int(seed), table, stores,
                             info.get("tags"), bool(info.get("reference")),
                             str(info.get("family", "")), int(info.get("seed_offset", 0))))
    return runs


def usable_steps(root: Path) -> list[int]:
    """Checkpoints whose activations are complete: the step's done marker and every layer's
    activation file."""
    layers = repstore.layers(root)
    ok = []
    for s in repstore.steps(root):
        folder = repstore.step_dir(root, s)
        if (folder / "done").is_file() and all((folder / "act" / f"{layer}.npy").is_file()
                                               for layer in layers):
            ok.append(s)
    return ok


def side_layers(root: Path) -> dict[str, list[str]]:
    """Layer names per side, in depth order (layers.json order)."""
    out: dict[str, list[str]] = {}
    for name, info in repstore.layers(root).items():
        out.setdefault(info["side"], []).append(name)
    return out


def load_rows(root: Path, step: int, layer: str, kind: str, idx: np.ndarray,
              n_rows: int) -> np.ndarray | None:
    """Rows ``idx`` of one stored array (None when the file is absent, e.g. tagger grads).

    Unlike repstore.load, it takes the row count from the caller: a store's token table is
    read once, not once per array."""
    path = repstore.step_dir(root, step) / kind / f"{layer}.npy"
    if not path.is_file():
        return None
    return np.asarray(repstore.open_array(path, n_rows)[idx])


def stable_seed(seed: int, *key) -> int:
    """A seed derived from the run seed and a key (stable across processes, unlike hash())."""
    return (int(seed) * 1_000_003 + zlib.crc32("|".join(map(str, key)).encode())) % 2**32


def subsample(n: int, cap: int | None, seed: int, *key) -> np.ndarray:
    """Sorted indices of a seeded random subset of min(n, cap) of range(n) (all: cap None)."""
    if cap is None or n <= cap:
        return np.arange(n)
    rng = np.random.default_rng(stable_seed(seed, *key))
    return np.sort(rng.choice(n, size=cap, replace=False))


def tagged_word_and_freq(tokens: pd.DataFrame, tag_column: str) -> tuple[pd.Series, pd.Series]:
    """The word a tag belongs to and its training frequency: the token itself for
    input-aligned columns, the next token of the sentence for ``*_target`` columns."""
    word = tokens["word"].astype(str).str.lower()
    freq = tokens["train_freq"].astype(float)
    if tag_column.endswith("_target"):
        group = tokens["sent_index"]
        word = word.groupby(group, sort=False).shift(-1)
        freq = freq.groupby(group, sort=False).shift(-1)
    return word, freq


def same_tokens(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether two stores' token tables hold the same tokens in the same order."""
    cols = ["sent_id", "position", "token"]
    return len(a) == len(b) and all((a[c].to_numpy() == b[c].to_numpy()).all() for c in cols)


@dataclass
class Probe:
    """One (model, probe) store opened for analysis: layers per side, usable steps, tokens,
    and the labels the probe carries (tag set -> column, from the probe manifest)."""

    run: ModelRun
    name: str
    root: Path
    steps: list[int]
    layers: dict[str, list[str]]
    tokens: dict[str, pd.DataFrame]
    labels: dict[str, str]

    @classmethod
    def open(cls, run: ModelRun, probe: str) -> Probe:
        root = Path(run.stores[probe])
        steps = usable_steps(root)
        last = int(run.checkpoints["step"].max())
        if steps and steps[-1] != last:
            log.warning("%s/%s: last stored step %d is not the last checkpoint %d; "
                        "using %d as the reference", run.name, probe, steps[-1], last, steps[-1])
        layers = side_layers(root)
        tokens = {side: repstore.tokens(root, side) for side in layers}
        labels = json.loads((root / "probe.json").read_text())["labels"]
        return cls(run, probe, root, steps, layers, tokens, labels)

    @property
    def final(self) -> int:
        return self.steps[-1]

    def side_of(self, layer: str) -> str:
        return next(side for side, names in self.layers.items() if layer in names)

    def sample(self, side: str, settings: AnalysisSettings) -> np.ndarray:
        """The (probe, side) token subsample shared by every model and checkpoint."""
        return subsample(len(self.tokens[side]), settings.max_tokens, settings.seed,
                         self.name, side)

    def where(self, step: int, layer: str, tag: str | None = None) -> str:
        """Names a representation in messages: model/probe, step, layer (and tag)."""
        return (f"{self.run.name}/{self.name} step {step} {layer}"
                + (f" tag {tag}" if tag else ""))

    def array(self, step: int, layer: str, idx: np.ndarray, kind: str = "act"):
        n = len(self.tokens[self.side_of(layer)])
        return load_rows(self.root, step, layer, kind, idx, n)
