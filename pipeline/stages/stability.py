"""The stability stage, per model: instability analysis (Frankle et al., ICML 2020). From the
model's full checkpoint at each rewind point W_k (``train.rewind``) a child is trained to the
end of the model's schedule with another data seed (``data_seed_offset``); the model itself
is the other child, trained on from W_k with its own data seed (the train stage's branch test
shows a child with that seed writes the model's own checkpoints byte for byte, so it is not
trained twice). Along the line between the two final weights the model's quality is measured
at ``alphas`` points: the validation loss (bits per token) and, for a translation model with
``decode``, greedy BLEU. The barrier, and whether W_k is stable, are the analysis's
(analysis.stability), so a threshold changes no result here.

Each child is a model like any other: its own train dir (resumable), checkpoints.csv with its
last update, extracted there (the extract settings) so its layers compare with the model's.
Writes stability.parquet (one row per rewind point, α and measure: ``COLUMNS``),
children.csv and stability.json; resumable per child and per path.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from analysis.fields import setting
from pipeline import checkpoints, evaluate, jobs, store
from pipeline.config import typed
from pipeline.decoding import Decoding
from pipeline.models import adapter
from pipeline.stages.extract import ExtractConfig, extract_model
from pipeline.stages.stage import Stage
from pipeline.stages.train import TrainConfig, branch_model, rewind_steps

log = logging.getLogger(__name__)
COLUMNS = ["model", "step", "share", "child", "data_seed", "child_data_seed", "alpha",
           "measure", "higher_better", "value"]
TABLE = "stability.parquet"
CHILDREN = "children.csv"
LOSS = "valid_loss"  # bits per target token, every kind's


@dataclass
class StabilityConfig:
    """conf/stability: the children and the path between them (the schema's ``stability``
    group)."""

    data_seed_offset: int = setting(ge=1, help="a child's data seed: the run's data_seed "
                                    "plus this")
    alphas: int = setting(ge=11, help="points on the line between the two children, the "
                          "ends included")
    limit: int | None = setting(ge=1, help="validation sequences per point (null: all)")
    decode: bool = setting(help="a translation model's greedy BLEU too, at each point")
    decode_limit: int | None = setting(ge=1, help="test2016 pairs decoded per point")
    decoding: Decoding = setting()
    extract: bool = setting(help="extract each child's last checkpoint")
    device: str = setting(choices=("cpu", "cuda"))
    threshold: float = setting(gt=0, help="stable: the validation loss barrier at most this "
                               "share of the mean of the ends (read by tickets and analyze)")


def child_dir(out: Path, step: int) -> Path:
    return Path(out) / "children" / f"step_{step:07d}"


def measure_with(kind, spec: dict, task, data: Path, settings):
    """The measure of a loaded model on a path (and of a ticket): validation loss, and BLEU
    where decoded; ``settings``: the stability or tickets config (its limit, decode,
    decode_limit, decoding and device)."""
    decoded = settings.decode and "bleu" in kind.quality_keys(spec)

    def measure(model) -> dict[str, float]:
        q = {LOSS: evaluate.token_metrics(model, task, "valid", settings.device,
                                          settings.limit)["loss_bits"]}
        if decoded:
            q["bleu"] = kind.quality(model, task, spec, data, settings.device,
                                     settings.decode_limit,
                                     dataclasses.asdict(settings.decoding))["bleu"]
        return q

    return measure


def trained(model_dir: Path, last: int) -> bool:
    """Whether a child's training has finished (its checkpoints table reaches ``last``)."""
    return (Path(model_dir) / checkpoints.CSV).is_file() and int(
        checkpoints.read_table(model_dir).step.iloc[-1]) == last


def train_children(name: str, spec: dict, model_dir: Path, data: Path, out: Path,
                   train: TrainConfig, seed: int, child_seed: int) -> list[int]:
    """Each rewind point's child trained (or resumed; a finished one kept) into
    out/children/<step>, ``train.parallel`` at a time, longest first; returns the rewind
    points. Runs in the runner's process, as the train stage does: fairseq-train is forked
    from it."""
    steps = rewind_steps(spec, train)
    if not steps:
        raise ValueError(f"{name}: train.rewind keeps no full checkpoint to branch from; "
                         "set it (e.g. experiment=stability)")
    last = int(spec["max_update"])

    def child(k: int):
        def run() -> None:
            log.info("stability %s: child from update %d of %d (data seed %d)", name, k,
                     last, child_seed)
            branch_model(f"{name}@{k}", spec, data, model_dir, k, child_dir(out, k), seed,
                         child_seed, train)
        return run

    jobs.run_chains([[child(k)] for k in steps if not trained(child_dir(out, k), last)],
                    train.parallel)
    return steps


def measure_paths(name: str, spec: dict, model_dir: Path, data: Path, out: Path,
                  steps: list[int], settings: StabilityConfig, extract: ExtractConfig,
                  data_seed: int, child_seed: int) -> pd.DataFrame:
    """The path between the model's and each child's last weights, measured at the
    ``alphas`` points (out/paths/<step>.parquet as each finishes), and each child extracted
    (``settings.extract``); returns the children's table (children.csv)."""
    import torch
    from tqdm import tqdm

    from pipeline.interpolation import path_values

    kind = adapter(spec)
    last = int(checkpoints.verify(model_dir).step.iloc[-1])
    model, task = kind.load(spec, checkpoints.checkpoint_path(model_dir, last), data,
                            settings.device)
    own = {k: v.clone() for k, v in model.state_dict().items()}
    alphas = np.linspace(0.0, 1.0, settings.alphas)
    measure = measure_with(kind, spec, task, data, settings)
    higher = kind.quality_keys(spec)
    paths = Path(out) / "paths"
    paths.mkdir(parents=True, exist_ok=True)
    children = []
    for k in tqdm(steps, desc=f"{name}/stability", unit="path", leave=False):
        child = child_dir(out, k)
        final = checkpoints.verify(child).iloc[-1]
        where = dict(model=name, step=k, share=k / last, child=str(child.relative_to(out)))
        children.append(dict(where, data_seed=child_seed,
                             valid_loss=float(final.valid_loss), sha256=final.sha256))
        path = paths / f"step_{k:07d}.parquet"
        if not path.is_file():
            theirs = torch.load(checkpoints.checkpoint_path(child, last),
                                map_location=settings.device, weights_only=False)["model"]
            rows = pd.DataFrame(path_values(model, own, theirs, alphas, measure)).melt(
                id_vars="alpha", var_name="measure", value_name="value").assign(
                data_seed=data_seed, child_data_seed=child_seed, **where)
            rows["higher_better"] = [higher.get(m, False) for m in rows.measure]
            store.write_with(path, lambda tmp, t=rows[COLUMNS]: t.to_parquet(tmp, index=False))
        if settings.extract:
            extract_model(f"{name}@{k}", spec, child, data, child / "extract", extract)
    return pd.DataFrame(children)


def stability_model(name: str, spec: dict, model_dir: Path, data: Path, out: Path,
                    settings: StabilityConfig, train: TrainConfig, extract: ExtractConfig,
                    seed: int, data_seed: int) -> dict:
    """Every rewind point of one model: its child trained, the path measured and the child
    extracted (in a process of its own); then out/stability.parquet and children.csv."""
    start = time.perf_counter()
    child_seed = data_seed + settings.data_seed_offset
    steps = train_children(name, spec, model_dir, data, out, train, seed, child_seed)
    children = jobs.call_in_process(
        "pipeline.stages.stability:measure_paths", name, spec, model_dir, data, out, steps,
        settings, extract, data_seed, child_seed, threads=train.threads)
    paths = Path(out) / "paths"
    rows = pd.concat([pd.read_parquet(paths / f"step_{k:07d}.parquet") for k in steps],
                     ignore_index=True)
    store.write_with(Path(out) / TABLE, lambda tmp: rows.to_parquet(tmp, index=False))
    store.write_with(Path(out) / CHILDREN, lambda tmp: children.to_csv(tmp, index=False))
    summary = {"rewind_steps": steps, "children": len(children), "data_seed": data_seed,
               "child_data_seed": child_seed, "alphas": settings.alphas,
               "seconds": round(time.perf_counter() - start, 1)}
    store.write_text(Path(out) / "stability.json", json.dumps(summary, indent=1))
    return summary


def validate_unit(unit: Path) -> None:
    """Raise store.Invalid when a stability unit's table or a child's checkpoint is missing
    or changed."""
    try:
        pd.read_parquet(Path(unit) / TABLE, columns=["step"])
        children = pd.read_csv(Path(unit) / CHILDREN)
    except (OSError, ValueError) as err:
        raise store.Invalid(f"{unit}: stability table unreadable ({err})") from None
    for child in children.child:
        try:
            checkpoints.verify(Path(unit) / child)
        except checkpoints.CheckpointError as err:
            raise store.Invalid(str(err)) from None


def branches(cfg: DictConfig, spec: dict) -> bool:
    """Whether a model has a unit: one this pipeline trains (not an imported series) with
    full checkpoints to branch from (``train.rewind``)."""
    return not adapter(spec).external and bool(
        rewind_steps(spec, typed(cfg.train, TrainConfig)))


def cost(cfg: DictConfig, spec: dict, data: Path) -> float:
    """The children's training, in the train stage's work (parameters x tokens x updates)."""
    train = typed(cfg.train, TrainConfig)
    last = int(spec["max_update"])
    return adapter(spec).work(spec, data) * sum(last - k for k in rewind_steps(spec, train)
                                                ) / last


def unit(cfg: DictConfig, name: str, spec: dict, out: Path, inputs: dict) -> dict:
    """Unit function: ``stability_model`` of the model's train unit."""
    return stability_model(name, spec, inputs["train"], inputs["prepare"], out,
                           typed(cfg.stability, StabilityConfig), typed(cfg.train, TrainConfig),
                           typed(cfg.extract, ExtractConfig), int(cfg.seed),
                           int(cfg.data_seed))


# the stable rule (``threshold``) is not in the key: it changes no child and no path
STAGE = Stage("stability", (*(f"stability.{f.name}" for f in dataclasses.fields(StabilityConfig)
                              if f.name != "threshold"),
                            "extract", "train.device", "train.max_valid_steps", "train.fairseq",
                            "seed", "data_seed"), ("prepare", "train"),
              code=("pipeline.stages.stability", "pipeline.interpolation"), unit=unit,
              resumable=True, check=validate_unit, applies=branches, data="prepare",
              cost=cost, table="stability")
