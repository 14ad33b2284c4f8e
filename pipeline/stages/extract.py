"""The extract stage, per model: for one trained model, every checkpoint and probe set, each layer's
activation at every token and the gradient of that token's own loss with respect to it.

Which probes a model reads (those whose sides match its adapter's), its layers, and how states
and per-token gradients are computed come from its adapter (pipeline.models); the probe manifest
written by prepare says which probe carries which labels. Models run in eval mode.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from analysis import repstore
from analysis.fields import setting
from analysis.steps import nearest
from pipeline import checkpoints, jobs, store
from pipeline.config import typed
from pipeline.models import adapter
from pipeline.stages.stage import Disk, Stage
from pipeline.stages.train import TrainConfig, schedule

log = logging.getLogger(__name__)
TOKEN_COLUMNS = ["probe", "side", "sent_id", "sent_index", "position", "token", "word_index",
                 "word", "first_subword", "pos", "pos_target", "upos", "upos_target", "xpos",
                 "genre", "doc_id", "train_freq"]
PROBES = "probes.json"  # the probe manifest prepare writes


@dataclass
class ExtractConfig:
    """conf/extract: which probes are read at each checkpoint and how states are stored (the
    schema's ``extract`` group)."""

    probes: list[str] = setting(help="the probe sets read at every checkpoint")
    max_tokens_per_probe: int | None = setting(ge=1, help="whole sentences, per side")
    gradients: bool = setting()
    reference_checkpoints: str = setting(choices=("last", "endpoint", "all"))
    late_share: float = setting(gt=0, lt=1)
    dtype: str = setting(choices=("float32", "float16"))
    batch_size: int = setting(ge=1)
    device: str = setting(choices=("cpu", "cuda"))


# ---------------------------------------------------------------------------- token tables

def probe_rows(probe_tokens: pd.DataFrame, probe: str, max_tokens: int | None) -> pd.DataFrame:
    """The probe's token rows, whole sentences in order, capped at `max_tokens` per side."""
    rows = probe_tokens[probe_tokens.probe == probe]
    if rows.empty:
        raise ValueError(f"probe {probe!r} has no tokens; "
                         f"probes: {sorted(probe_tokens.probe.unique())}")
    first_side = rows.side.iloc[0]
    lengths = rows[rows.side == first_side].groupby("sent_index", sort=True).size()
    if max_tokens is not None:
        keep = lengths.index[lengths.cumsum().to_numpy() <= max_tokens]
        rows = rows[rows.sent_index.isin(keep)]
    rows = rows.sort_values(["side", "sent_index", "position"], kind="stable")
    return rows.reset_index(drop=True)


# ---------------------------------------------------------------------------- per model

def probe_manifest(data: Path) -> dict[str, dict]:
    path = Path(data) / PROBES
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the prepare stage predates the probe "
                                "manifest; rerun it with force=[prepare]")
    return json.loads(path.read_text())


def model_probes(spec: dict, manifest: dict[str, dict], wanted: list[str]) -> list[str]:
    """The configured probes this model reads: those whose sides are its adapter's."""
    unknown = sorted(set(wanted) - set(manifest))
    if unknown:
        raise ValueError(f"extract.probes names {unknown}, which prepare did not write; "
                         f"probes: {sorted(manifest)}")
    sides = tuple(adapter(spec).sides_of(spec))
    return [p for p in wanted if tuple(manifest[p]["sides"]) == sides]


def extracted_checkpoints(spec: dict, table: pd.DataFrame,
                          extract: ExtractConfig) -> pd.DataFrame:
    """The rows of a checkpoints table that get extracted: all, or of a reference model
    (tagger) its last one (`reference_checkpoints: last`; the analyses compare against it),
    with the one nearest `late_share` of training (`endpoint`: the endpoint's late CKA)."""
    which = extract.reference_checkpoints
    if not adapter(spec).reference or which == "all":
        return table
    last = len(table) - 1
    if which == "last":
        return table.iloc[last:]
    late = nearest(table.step, extract.late_share, table.step.iloc[-1])
    return table.iloc[sorted({late, last})]


def model_manifest(name: str, spec: dict, steps: list[int], probes: dict[str, bool]) -> dict:
    """What the analyses need to know of a model, so they never ask for its kind, and what
    its extraction must hold (the steps, and per probe whether it has gradients)."""
    kind = adapter(spec)
    return {"name": name, "kind": spec["kind"], "family": kind.family_of(spec),
            "reference": kind.reference, "tags": spec.get("tags"),
            "seed_offset": int(spec.get("seed_offset", 0)),
            "subword": spec.get("subword"),  # a subword model's word alignment (HF)
            "tokenization": spec.get("tokenization"),  # how its words are read (HF)
            "layers": [{"name": n, "side": s, "dim": int(d)} for n, s, d in kind.layers(spec)],
            "steps": [int(s) for s in steps], "gradients": probes}


def validate_unit(unit: Path) -> None:
    """Raise store.Invalid naming what is missing or broken in an extract unit (a step dir
    deleted, an array truncated, a token table unreadable)."""
    path = Path(unit) / "model.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise store.Invalid(f"{path} unreadable ({err})") from None
    found = [p for probe, grads in info["gradients"].items()
             for p in repstore.problems(Path(unit) / probe, info["steps"], grads)]
    if found:
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        raise store.Invalid("; ".join(found[:3]) + more)


def _store_ready(root: Path, rows: pd.DataFrame, layer_info: dict, probe_entry: dict) -> None:
    """The store's token table, layer list and probe entry, (re)written unless a resumed
    store already holds exactly these."""
    try:
        if (len(repstore.tokens(root)) == len(rows) and repstore.layers(root) == layer_info
                and json.loads((root / "probe.json").read_text()) == probe_entry):
            return
    except (OSError, ValueError):
        pass  # missing or unreadable (a truncated file from a killed run): rewrite
    repstore.write_tokens(root, rows[TOKEN_COLUMNS], layer_info)
    store.write_text(root / "probe.json", json.dumps(probe_entry, indent=1))


def extract_model(name: str, spec: dict, model_dir: Path, data: Path, out: Path,
                  extract: ExtractConfig, last_only: bool = False) -> dict:
    """Every extracted checkpoint of one model (``last_only``: its last) on each of its probe
    sets, into out/<probe>/. Resumable: a step is skipped only when its done marker and every
    array are sound."""
    from tqdm import tqdm  # in the unit's own process (``unit``), not the runner's

    kind = adapter(spec)
    table = extracted_checkpoints(spec, checkpoints.verify(model_dir), extract)
    if last_only:
        table = table.iloc[-1:]
    manifest = probe_manifest(data)
    probe_tokens = pd.read_parquet(Path(data) / "probe_tokens.parquet")
    layer_info = {n: {"side": s, "dim": int(d)} for n, s, d in kind.layers(spec)}
    probes = {}
    for probe in model_probes(spec, manifest, extract.probes):
        rows = probe_rows(probe_tokens, probe, extract.max_tokens_per_probe)
        if rows.empty:
            raise ValueError(f"{name}/{probe}: no whole sentence fits "
                             f"extract.max_tokens_per_probe={extract.max_tokens_per_probe}")
        label_column = kind.label_column(spec, manifest[probe])
        probes[probe] = (rows, label_column, extract.gradients and label_column != "")
    out.mkdir(parents=True, exist_ok=True)
    store.write_text(out / "model.json", json.dumps(model_manifest(
        name, spec, list(table.step), {p: g for p, (_, _, g) in probes.items()}), indent=1))
    first = checkpoints.checkpoint_path(model_dir, int(table.step.iloc[0]))
    model, task = kind.load(spec, first, data, extract.device)
    summary = {}
    for probe, (rows, label_column, with_grads) in probes.items():
        root = out / probe
        _store_ready(root, rows, layer_info, manifest[probe])
        for step, file in tqdm(list(zip(table.step, table.file, strict=True)),
                               desc=f"{name}/{probe}", unit="ckpt", leave=False):
            if not repstore.problems(root, [step], with_grads):
                continue
            kind.load_weights(model, checkpoints.checkpoint_path(model_dir, step),
                              extract.device)
            acts, grads = kind.states(model, task, spec, rows, label_column, with_grads,
                                      extract.batch_size)
            if sorted(acts) != sorted(layer_info) or (with_grads and sorted(grads) != sorted(acts)):
                raise RuntimeError(f"{name}: states gave layers {sorted(acts)} (gradients "
                                   f"{sorted(grads)}), its adapter declares {sorted(layer_info)}")
            for layer, info in layer_info.items():
                n = int((rows.side == info["side"]).sum())
                if acts[layer].shape != (n, info["dim"]):
                    raise RuntimeError(f"{name}/{probe} step {step} {layer}: shape "
                                       f"{acts[layer].shape}, expected ({n}, {info['dim']})")
            repstore.write_arrays(root, step, "act", acts, extract.dtype)
            if with_grads:
                repstore.write_arrays(root, step, "grad", grads, extract.dtype)
            store.write_text(repstore.step_dir(root, step) / "done", file)
        summary[probe] = {"tokens": int(len(rows)), "checkpoints": len(table)}
    return summary


def _rows_read(spec: dict, data: Path, extract: ExtractConfig) -> list[pd.DataFrame]:
    """The token rows (probe, side, sentence, position) of each probe the model's extraction
    reads, as ``extract_model`` caps them."""
    probe_tokens = pd.read_parquet(Path(data) / "probe_tokens.parquet",
                                   columns=["probe", "side", "sent_index", "position"])
    return [probe_rows(probe_tokens, probe, extract.max_tokens_per_probe)
            for probe in model_probes(spec, probe_manifest(data), extract.probes)]


def disk_estimate(spec: dict, n_checkpoints: int, data: Path, extract: ExtractConfig) -> float:
    """Bytes one model's extraction of ``n_checkpoints`` checkpoints will write, from the
    probes' token counts and the model's layer widths."""
    itemsize = np.dtype(extract.dtype).itemsize
    layers = adapter(spec).layers(spec)
    total = 0.0
    for rows in _rows_read(spec, data, extract):
        per_side = rows.side.value_counts()
        width = sum(int(per_side.get(side, 0)) * dim for _, side, dim in layers)
        total += width * itemsize * n_checkpoints * (2 if extract.gradients else 1)
    return total


def _checkpoints_read(cfg: DictConfig, spec: dict) -> int:
    """How many of the checkpoints its training will write the model's extraction reads."""
    steps = pd.DataFrame({"step": schedule(spec, typed(cfg.train, TrainConfig))})
    return len(extracted_checkpoints(spec, steps, typed(cfg.extract, ExtractConfig)))


def disk(cfg: DictConfig, spec: dict, data: Path) -> Disk:
    """The model's extraction in MB, of the checkpoints its training will write that it reads
    (the runner logs it before any work)."""
    extract = typed(cfg.extract, ExtractConfig)
    mb = disk_estimate(spec, _checkpoints_read(cfg, spec), data, extract) / 1e6
    return Disk("extraction", f"extraction {mb:6.0f} MB", mb)


def cost(cfg: DictConfig, spec: dict, data: Path) -> float:
    """The model's extraction work: parameters x probe tokens read x checkpoints, three times
    that with gradients (a backward pass costs about two forward ones)."""
    extract = typed(cfg.extract, ExtractConfig)
    tokens = sum(len(rows) for rows in _rows_read(spec, data, extract))
    return (float(adapter(spec).parameters(spec, data)) * tokens * _checkpoints_read(cfg, spec)
            * (3 if extract.gradients else 1))


def unit(cfg: DictConfig, name: str, spec: dict, out: Path, inputs: dict) -> dict:
    """Unit function: ``extract_model`` in its own process (torch state stays out of the
    runner), with the configured torch threads."""
    return jobs.call_in_process("pipeline.stages.extract:extract_model", name, spec,
                                inputs["train"], inputs["prepare"], out,
                                typed(cfg.extract, ExtractConfig),
                                threads=int(cfg.train.threads))


STAGE = Stage("extract", ("extract",), ("prepare", "train"), code=("pipeline.stages.extract",),
              unit=unit, resumable=True, check=validate_unit, data="prepare", disk=disk,
              cost=cost)
