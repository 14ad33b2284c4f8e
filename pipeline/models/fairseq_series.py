"""A user's own fairseq run (`kind: fairseq_series`): a folder of ``checkpoint_*.pt`` files of an
``lstm_lm``, ``transformer_lm`` or ``transformer_nmt`` model, read through that model's adapter
(its layers, states and per-token gradients) against the dictionary the run was trained with.

The probes' tokens are the prepare stage's: words for the LMs, its BPE pieces for the NMT, so an
NMT series must share that segmentation (its dictionary then maps them; unknown pieces are
<unk>). Each checkpoint's step is read from its name (``checkpoint_<epoch>_<updates>.pt``,
``step_<n>.pt``) or else from the updates it records; checkpoint_last/best are duplicates and
skipped.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from analysis.fields import REQUIRED, setting
from pipeline.models import Spec, get, register
from pipeline.models.external import ExternalKind, step_of

ADAPTERS = ("lstm_lm", "transformer_lm", "transformer_nmt")


@dataclass
class FairseqSeriesConfig:
    """conf/model/<name>.yaml of a fairseq series: where it is and the architecture's sizes
    that its adapter's layers read."""

    kind: str = REQUIRED
    adapter: str = setting(choices=ADAPTERS)
    checkpoints: str = REQUIRED        # the folder of checkpoint_*.pt
    dictionary: str = REQUIRED         # the fairseq data folder the run read (dict*.txt)
    layers: int = setting(ge=1)
    embed_dim: int = setting(ge=1)
    hidden: int | None = setting(None, ge=1)   # lstm_lm
    ffn_dim: int | None = setting(None, ge=1)  # the Transformers


@register("fairseq_series")
class FairseqSeries(ExternalKind):
    """Someone's fairseq checkpoints, analysed by the adapter of their architecture."""

    Config = FairseqSeriesConfig

    @staticmethod
    def inner(spec: Spec):
        return get(spec["adapter"])

    def family_of(self, spec: Spec) -> str:
        return self.inner(spec).family

    def series(self, spec: Spec) -> list[tuple[int, Path]]:
        return _series(str(spec["checkpoints"]))

    def source(self, spec: Spec) -> str:
        return f"fairseq checkpoints in {spec['checkpoints']} ({spec['adapter']})"

    def layers(self, spec: Spec) -> list[tuple[str, str, int]]:
        return self.inner(spec).layers(spec)

    def sides_of(self, spec: Spec) -> tuple[str, ...]:
        return self.inner(spec).sides

    def load_overrides(self, spec: Spec, data: Path) -> dict:
        return {"data": str(Path(spec["dictionary"]).resolve())}

    def label_column(self, spec: Spec, probe) -> str | None:
        return None  # an LM or NMT series: its targets are the next tokens

    def states(self, model, task, spec, rows, label_column, grads, batch_size):
        return self.inner(spec).states(model, task, spec, rows, label_column, grads,
                                       batch_size)

    def project(self, model, spec, layer, fn):
        return self.inner(spec).project(model, spec, layer, fn)

    def quality(self, model, task, spec, data, device, limit, decoding=None):
        """Its adapter's, on the valid split of the series' own data folder (``dictionary``;
        an NMT's BLEU on the prepared test2016, which it must share the pieces of)."""
        return self.inner(spec).quality(model, task, spec, data, device, limit, decoding)

    def quality_keys(self, spec):
        return self.inner(spec).quality_keys(spec)


@functools.cache
def _series(folder: str) -> list[tuple[int, Path]]:
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"fairseq series: no folder {root}")
    found: dict[int, Path] = {}
    for path in sorted(root.glob("*.pt")):
        if path.stem in ("checkpoint_last", "checkpoint_best"):
            continue
        step = step_of(path.name)
        if step is None:
            step = _recorded_updates(path)
        if step in found:
            raise ValueError(f"fairseq series {root}: {found[step].name} and {path.name} "
                             f"are both step {step}")
        found[step] = path
    return sorted(found.items())


def _recorded_updates(path: Path) -> int:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    history = state.get("optimizer_history") or [{}]
    if "num_updates" not in history[-1]:
        raise ValueError(f"{path}: no step in its name (checkpoint_<epoch>_<updates>.pt) "
                         "and none recorded in it (optimizer_history num_updates)")
    return int(history[-1]["num_updates"])
