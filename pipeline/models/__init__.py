"""Model kinds: one adapter per model family, registered by name (as fairseq registers
architectures). A model preset (conf/model/<name>.yaml) names its adapter with `kind`.

An adapter owns everything specific to its family, so the train, extract and evaluate loops
and the analyses know no kind: fairseq-train flags, the parameter count (for the disk estimate),
its layers and the probe sides it reads, how a checkpoint is loaded against the prepared data,
the per-layer states and per-token gradients on probe sentences, and the final evaluation.
A forward hook of each adapter (``project``) replaces one layer's state by a function of it (the
compress stage's projections), and ``quality`` measures a loaded model (so projected or pruned)
on its held-out evaluation data.
Adding a family is one module with a ``@register("<kind>")`` class and one preset file: the
modules of this package are found (pkgutil), not listed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.fields import REQUIRED, setting

Spec = Mapping[str, Any]
_REGISTRY: dict[str, ModelKind] = {}


class ModelKind:
    """The interface of an adapter; subclasses override what their family needs.

    ``spec`` is a model's resolved preset (a plain dict) and ``data`` the prepare stage's
    directory. Layers are ``(name, side, dim)`` in depth order per side (depth 0 = the input
    embedding); ``sides`` are the probe sides the model reads (``lm`` for word streams,
    ``source``/``target`` for translation pairs).
    """

    kind: str = ""
    Config: type  # the preset's schema (a dataclass; pipeline/schema.py checks presets with it)
    family: str = ""          # architecture family, for labels ("lstm", "transformer")
    sides: tuple[str, ...] = ()
    reference: bool = False   # analysed as a trained reference (taggers), not over training
    rising: str | None = None  # a final metric also evaluated earlier: learned = stopped rising
    external: bool = False    # a series of someone else's checkpoints: imported, not trained

    def key_inputs(self, spec: Spec) -> dict[str, str]:
        """Files outside the artifacts its train unit reads, by content hash (none: it trains;
        an external series: its checkpoints)."""
        return {}

    def sides_of(self, spec: Spec) -> tuple[str, ...]:
        """The probe sides this model reads (a series' depend on the model it holds)."""
        return self.sides

    def family_of(self, spec: Spec) -> str:
        return self.family

    def fairseq_args(self, spec: Spec, data: Path) -> list[str]:
        """The task, architecture and optimisation flags of fairseq-train (data path first)."""
        raise NotImplementedError

    def parameters(self, spec: Spec, data: Path) -> int:
        """Parameter count from the architecture (sizes checkpoints before training)."""
        raise NotImplementedError

    def tokens_per_update(self, spec: Spec) -> int:
        """Training tokens in one update (approximate; orders jobs by their cost)."""
        raise NotImplementedError

    def layers(self, spec: Spec) -> list[tuple[str, str, int]]:
        raise NotImplementedError

    def load_overrides(self, spec: Spec, data: Path) -> dict:
        """fairseq arg_overrides pointing a checkpoint at this prepare stage's data."""
        raise NotImplementedError

    def label_column(self, spec: Spec, probe: Mapping) -> str | None:
        """The probe column with this model's gold labels of the tokens read (taggers), or
        None when its targets are the next tokens themselves (LMs, NMT); '' when the probe
        has no labels of the model's kind (then activations only)."""
        return None

    def states(self, model, task, spec: Spec, rows: pd.DataFrame, label_column: str | None,
               grads: bool, batch_size: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Activations and per-token own-loss gradients of every layer on a probe's rows:
        {layer: tokens × dim} in the order of the rows of that layer's side."""
        raise NotImplementedError

    def project(self, model, spec: Spec, layer: str,
                fn: Callable[[Any], Any]) -> contextlib.AbstractContextManager:
        """A block in which every forward pass of ``model`` has ``layer``'s state (a name of
        ``layers(spec)``; exactly the state ``states`` records under it) replaced by
        ``fn(state)``, ``fn`` mapping [..., dim] tensors to [..., dim]: what the layers above
        (and a recurrent layer's next step) read is the replaced state. The hook is removed
        on leaving the block, also on an exception."""
        raise NotImplementedError(f"model kind {self.kind!r} has no projection hook")

    def load(self, spec: Spec, checkpoint: Path, data: Path, device: str):
        """(model, task) of a checkpoint, in eval mode on ``device``: fairseq's loader with
        the adapter's data overrides (``task`` is what ``states`` reads the vocabulary from)."""
        from pipeline import evaluate

        model, _, task = evaluate.load_model(checkpoint, self.load_overrides(spec, data))
        return model.to(device).eval(), task

    def load_weights(self, model, checkpoint: Path, device: str) -> None:
        """Another checkpoint's weights into a model ``load`` made (same architecture)."""
        import torch

        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        model.eval()

    def forward(self, model, task, rows: pd.DataFrame, batch_size: int) -> None:
        """The plain forward pass over a probe's batches (what extraction is timed against)."""
        raise NotImplementedError

    def evaluate(self, spec: Spec, checkpoint: Path, data: Path, device: str) -> dict:
        """Final metrics of a trained model (test perplexity, accuracy, BLEU, ...)."""
        raise NotImplementedError

    def quality(self, model, task, spec: Spec, data: Path, device: str,
                limit: int | None, decoding: Mapping | None = None) -> dict[str, float]:
        """The quality of a loaded model (as ``load`` returns it, in eval mode; within a
        ``project`` block, or a pruned copy) on its own held-out evaluation data, by the
        names ``quality_keys`` gives; ``limit`` bounds the data read (each kind says how;
        None: all of it). ``decoding`` (the translate config's beam, max_len_a, max_len_b,
        batch_size) adds the measures that decode (a translation model's BLEU); None: the
        teacher-forced ones only."""
        raise NotImplementedError(f"model kind {self.kind!r} has no quality measure (the "
                                  "compress stage reads the LMs, taggers and NMT)")

    def quality_keys(self, spec: Spec) -> dict[str, bool]:
        """The names ``quality`` returns, the primary one first, each with whether higher is
        better (what k* and s* compare against the unprojected, unpruned model); empty for a
        kind without a quality measure (the compress stage has no unit for it)."""
        return {}

    def work(self, spec: Spec, data: Path) -> float:
        """Relative training cost (parameters × tokens × updates), longest jobs first."""
        return float(self.parameters(spec, data)) * self.tokens_per_update(spec) * float(
            spec["max_update"])


SCHEDULERS = ("reduce_lr_on_plateau", "inverse_sqrt", "polynomial_decay", "fixed")


@dataclass
class LRSchedule:
    """The learning-rate schedule every preset names (its schema fields; scheduler_args)."""

    lr_scheduler: str = setting(choices=SCHEDULERS)
    warmup_updates: int = setting(ge=0, help="linear from 0 where the scheduler warms up")
    lr_shrink: float = setting(gt=0, le=1, help="reduce_lr_on_plateau: factor at a plateau")
    end_lr: float = setting(ge=0, help="polynomial_decay: the rate at max_update")
    power: float = setting(gt=0, help="polynomial_decay: the decay's power")


def scheduler_args(spec: Spec) -> list:
    """fairseq's learning-rate schedule flags from a preset's ``lr_scheduler`` and its
    parameters: ``lr_shrink`` (reduce_lr_on_plateau: the factor at each plateau),
    ``warmup_updates`` (linear from 0 where the scheduler warms up), ``end_lr`` and
    ``power`` (polynomial_decay: from ``lr`` after warm-up to ``end_lr`` at ``max_update``)."""
    name, warmup = spec["lr_scheduler"], int(spec["warmup_updates"])
    args = ["--lr-scheduler", name]
    if name == "reduce_lr_on_plateau":
        args += ["--lr-shrink", spec["lr_shrink"]]
    elif name == "polynomial_decay":
        args += ["--end-learning-rate", spec["end_lr"], "--power", spec["power"],
                 "--total-num-update", spec["max_update"]]
    if warmup or name == "inverse_sqrt":
        args += ["--warmup-updates", warmup]
    return args


def adam_betas(spec: Spec) -> str:
    """A preset's ``adam_betas`` as fairseq's --adam-betas reads them: "(0.9, 0.98)"."""
    return str(tuple(spec["adam_betas"]))


def replace_output(points: Mapping[str, Any], layer: str,
                   fn: Callable[[Any], Any]) -> contextlib.AbstractContextManager:
    """``project`` where layer ``layer`` is the output of module ``points[layer]``, called once
    per forward pass (per time step, in a recurrence): a forward hook, run before the module's
    other hooks (so recorders see the replaced state), returns that output with ``fn`` applied
    to it, or to its first element where it is a tuple (an LSTM cell's (h, c), a Transformer
    layer's (x, attention, ...)). An unknown layer names the known ones."""
    if layer not in points:
        raise ValueError(f"no layer {layer!r} to project; the model's layers: {list(points)}")

    def hook(module, inputs, output):
        return (fn(output[0]), *output[1:]) if isinstance(output, tuple) else fn(output)

    return hooked(lambda: [points[layer].register_forward_hook(hook, prepend=True)])


@contextlib.contextmanager
def hooked(install: Callable[[], list]) -> Iterator[None]:
    """A block with the hooks that ``install`` registers (on entering it; it returns their
    handles), removed on leaving it, also on an exception."""
    handles = install()
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def register(kind: str):
    """Class decorator: register an adapter under ``kind`` (one instance per kind)."""
    def wrap(cls: type[ModelKind]) -> type[ModelKind]:
        if kind in _REGISTRY:
            raise ValueError(f"model kind {kind!r} is registered twice")
        cls.kind = kind
        _REGISTRY[kind] = cls()
        return cls
    return wrap


@functools.cache
def _load() -> dict[str, ModelKind]:
    """The registry, with every module of this package imported (once): whichever registers
    a kind is found, not listed."""
    for module in pkgutil.iter_modules(__path__, f"{__name__}."):
        importlib.import_module(module.name)
    return _REGISTRY


def get(kind: str) -> ModelKind:
    """The adapter of a model kind; an unknown kind names the known ones."""
    if kind not in _REGISTRY:
        _load()
    if kind not in _REGISTRY:
        raise ValueError(f"unknown model kind {kind!r}; known kinds: {sorted(_REGISTRY)}")
    return _REGISTRY[kind]


def kinds() -> list[str]:
    return sorted(_load())


def adapter(spec: Spec) -> ModelKind:
    return get(str(spec["kind"]))


def complete(spec: Spec) -> dict:
    """A preset with its kind's values for the optional keys it leaves out: only a kind whose
    presets a user writes inline (an external series') has such keys; a trained kind's
    presets state every value. The adapters read completed presets, never a fallback."""
    return {**{f.name: f.default for f in dataclasses.fields(adapter(spec).Config)
               if f.default is not dataclasses.MISSING and f.default != REQUIRED}, **spec}


def dict_size(path: Path) -> int:
    """Entries of a fairseq dictionary file plus the four specials fairseq adds."""
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f) + 4
