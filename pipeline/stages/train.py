"""The train stage, per model: one model trained with fairseq-train (a forked job), with
analysis checkpoints on the configured schedule, a checkpoints.csv and an evaluation. What is
specific to the model's family (flags, size, evaluation) comes from its adapter
(pipeline.models)."""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from analysis.fields import setting
from pipeline import checkpoints, jobs, store
from pipeline.config import typed
from pipeline.models import adapter
from pipeline.models.external import import_series
from pipeline.progress import Progress
from pipeline.runtime import REPO_ROOT, subprocess_env
from pipeline.schedule import checkpoint_schedule
from pipeline.stages.stage import Disk, Stage

log = logging.getLogger(__name__)
PLUGIN = str(Path(REPO_ROOT) / "pipeline" / "fairseq_plugin")
REWIND = "rewind"  # a model's full checkpoints to branch from


@dataclass
class Schedule:
    log_points: int = setting(ge=0, help="log-spaced early checkpoints")
    linear_points: int = setting(ge=1, help="evenly spaced checkpoints up to the last update")


@dataclass
class TrainConfig:
    """conf/train: how models train (the schema's ``train`` group)."""

    device: str = setting(choices=("cpu", "cuda"))
    threads: int = setting(ge=1, help="torch threads per job")
    parallel: int = setting(ge=1, help="jobs at a time")
    schedule: Schedule = setting()
    max_valid_steps: int | None = setting(ge=1, help="validation batches per checkpoint")
    fairseq: dict[str, Any] = setting(help="extra fairseq-train flags, passed through")
    earlier_eval: float = setting(gt=0, lt=1, help="the share of training at which a metric "
                                  "that must stop rising (BLEU) is also evaluated")
    rewind: list[float] = setting(ge=0, lt=1, help="shares of training at which a full "
                                  "checkpoint is kept to branch from (stability, tickets)")


def fairseq_args(spec: dict, data: Path, save_dir: Path, seed: int, train: TrainConfig,
                 max_update: int) -> list[str]:
    """fairseq-train flags for one model (the same list the benchmark runs bare); ``seed``
    sets its initialisation, and its data order unless the environment names a data seed
    (``hook_env``)."""
    args = adapter(spec).fairseq_args(spec, data) + [
        "--user-dir", PLUGIN, "--seed", seed + int(spec["seed_offset"]),
        "--max-update", max_update,
        "--save-dir", str(save_dir), "--save-interval-updates", max(1, max_update // 10),
        "--keep-interval-updates", 1, "--no-epoch-checkpoints", "--log-format", "simple",
        "--log-interval", max(1, min(100, max_update // 10)), "--num-workers", 0,
        "--tensorboard-logdir", str(Path(save_dir).parent / "tensorboard"),
    ]
    if train.max_valid_steps is not None:
        args += ["--max-valid-steps", train.max_valid_steps]
    if train.device == "cpu":
        args.append("--cpu")
    for key, value in train.fairseq.items():
        args += [f"--{key.replace('_', '-')}", value]
    return [str(a) for a in args]


def schedule(spec: dict, train: TrainConfig) -> list[int]:
    """The analysis checkpoints' steps: the configured schedule, or an external series' own."""
    kind = adapter(spec)
    if kind.external:
        return kind.steps(spec)
    return checkpoint_schedule(spec["max_update"], train.schedule.log_points,
                               train.schedule.linear_points)


def rewind_steps(spec: dict, train: TrainConfig) -> list[int]:
    """The updates nearest ``train.rewind``'s shares of training (each once, in order)."""
    return sorted({round(share * int(spec["max_update"])) for share in train.rewind})


def checkpoint_mb(spec: dict, data: Path, train: TrainConfig) -> float:
    """Disk the model's checkpoints will take: the analysis checkpoints (weights only) plus a
    full fairseq checkpoint with optimizer state (about 3 times the weights) to resume from
    and one per rewind point."""
    mb = 4 * adapter(spec).parameters(spec, data) / 1e6
    return mb * (len(schedule(spec, train)) + 3 * (1 + len(rewind_steps(spec, train))))


def disk(cfg: DictConfig, spec: dict, data: Path) -> Disk:
    """The model's checkpoints, counted and in MB (the runner logs them before any work)."""
    train = typed(cfg.train, TrainConfig)
    mb = checkpoint_mb(spec, data, train)
    return Disk("checkpoints", f"{len(schedule(spec, train)):2d} checkpoints, {mb:6.0f} MB", mb)


def cost(cfg: DictConfig, spec: dict, data: Path) -> float:
    """The model's training work: its adapter's parameters x tokens per update x updates
    (its evaluations are in the seconds per unit its kind is calibrated to)."""
    return adapter(spec).work(spec, data)


def final_metrics(spec: dict, model_dir: Path, table: pd.DataFrame, data: Path, device: str,
                  earlier: float) -> dict:
    """The final checkpoint's evaluation; a metric the adapter names as ``rising`` (BLEU)
    also at the checkpoint nearest the share ``earlier`` of training (``train.earlier_eval``),
    to see whether it still rises."""
    kind = adapter(spec)
    metrics = kind.evaluate(spec, model_dir / "checkpoints" / table.file.iloc[-1], data, device)
    if kind.rising:
        row = table.iloc[int((table.step - earlier * table.step.max()).abs().argmin())]
        before = kind.evaluate(spec, model_dir / "checkpoints" / row.file, data, device)
        metrics[f"{kind.rising}_earlier"] = before[kind.rising]
        metrics["earlier_step"] = int(row.step)
    return metrics


def rewind_table(model_dir: Path) -> pd.DataFrame:
    """The full checkpoints kept to branch from: step, file, sha256, valid_loss."""
    with open(Path(model_dir) / REWIND / "rewind.jsonl") as f:
        return pd.DataFrame([json.loads(line) for line in f]).sort_values("step")


def rewind_checkpoint(model_dir: Path, step: int) -> Path:
    """The full checkpoint at ``step``, checked against its recorded sha256 first."""
    table = rewind_table(model_dir)
    rows = table[table.step == step]
    if rows.empty:
        raise checkpoints.CheckpointError(
            f"{model_dir}: no full checkpoint at update {step} to branch from (kept: "
            f"{list(table.step)}; train.rewind sets them)")
    path = Path(model_dir) / REWIND / rows.file.iloc[0]
    if checkpoints.content_hash(path) != rows.sha256.iloc[0]:
        raise checkpoints.CheckpointError(f"{path} changed since training (sha256 differs)")
    return path


def write_checkpoints_csv(model_dir: Path) -> pd.DataFrame:
    with open(model_dir / "checkpoints" / "snapshots.jsonl") as f:
        records = [json.loads(line) for line in f]
    table = pd.DataFrame(records).sort_values("step")
    table["valid_ppl"] = [2 ** v if v is not None and not math.isnan(v) else None
                          for v in table.valid_loss]
    table = table[checkpoints.COLUMNS]
    store.write_with(model_dir / checkpoints.CSV, lambda tmp: table.to_csv(tmp, index=False))
    return table


def hook_env(model_dir: Path, steps: list[int], threads: int, data_seed: int | None = None,
             rewind: list[int] = (), mask: Path | None = None) -> dict[str, str]:
    """The environment of a fairseq-train run with the pipeline's hook: analysis checkpoints
    at ``steps`` into model_dir/checkpoints, a data order from ``data_seed`` (None: the
    ``--seed``), full checkpoints at ``rewind`` into model_dir/rewind, and a ticket's mask
    (pipeline.fairseq_plugin.schedule_hook)."""
    env = {**subprocess_env(threads), "PIPELINE_SCHEDULE": ",".join(map(str, steps)),
           "PIPELINE_SNAPSHOT_DIR": str(model_dir / "checkpoints"),
           "PIPELINE_PID": str(os.getpid())}  # the pipeline, for the resume tests' faults
    if data_seed is not None:
        env["PIPELINE_DATA_SEED"] = str(data_seed)
    if rewind:
        env["PIPELINE_REWIND"] = ",".join(map(str, rewind))
        env["PIPELINE_REWIND_DIR"] = str(model_dir / REWIND)
    if mask is not None:
        env["PIPELINE_MASK"] = str(mask)
    return env


def drop_resume_state(model_dir: Path, keep: str | None = None) -> None:
    """Delete a finished run's fairseq checkpoints (but ``keep``): a finished run is not
    resumed from them, and the hook has written what is analysed."""
    for extra in (Path(model_dir) / "fairseq").glob("checkpoint*.pt"):
        if extra.name != keep:
            extra.unlink()


def run_fairseq(name: str, args: list[str], env: dict[str, str], model_dir: Path,
                threads: int, max_update: int) -> pd.DataFrame:
    """fairseq-train with the hook into ``model_dir`` (resumed from its checkpoint_last.pt
    where a stopped run left one), then its checkpoints.csv, returned."""
    model_dir.mkdir(parents=True, exist_ok=True)
    # A crash of the fairseq process (seen once in CI: "terminate called without an active
    # exception" while saving its last checkpoint) is retried once: the rerun resumes from
    # checkpoint_last.pt and the schedule hook rewrites any analysis checkpoint after it.
    # A process stopped by a signal is not a crash: the run stops, resumable.
    progress = Progress(name, max_update, model_dir)
    for attempt in (1, 2):
        code = jobs.run_main("fairseq_cli.train:cli_main", args, model_dir / "train.log", env,
                             REPO_ROOT, threads, progress.report, progress.every)
        if code == 0:
            break
        if jobs.was_stopped(code):
            raise jobs.Interrupted(f"training of {name} was stopped (exit {code}); rerun the "
                                   "same command to resume")
        tail = "".join(open(model_dir / "train.log").readlines()[-25:])
        if attempt == 2:
            raise RuntimeError(f"fairseq-train failed for {name} (log {model_dir}/train.log):"
                               f"\n{tail}")
        log.warning("train %s: fairseq-train exited with %d; resuming once:\n%s", name, code,
                    tail)
    return write_checkpoints_csv(model_dir)


def train_model(name: str, spec: dict, data: Path, model_dir: Path, seed: int,
                train: TrainConfig, data_seed: int | None = None) -> dict:
    """Train (or resume) one model into ``model_dir``, its data order from ``data_seed``
    (None: ``seed``); returns its summary."""
    steps = schedule(spec, train)
    rewind = rewind_steps(spec, train)
    offset = int(spec["seed_offset"])
    args = fairseq_args(spec, data, model_dir / "fairseq", seed, train, spec["max_update"])
    env = hook_env(model_dir, steps, train.threads,
                   None if data_seed in (None, seed) else data_seed + offset, rewind)
    log.info("train %s: %d updates into %s; %d analysis checkpoints", name,
             spec["max_update"], model_dir, len(steps))
    table = run_fairseq(name, args, env, model_dir, train.threads, spec["max_update"])
    missing = sorted(set(steps) - set(table.step))
    if missing:
        raise RuntimeError(f"model {name}: scheduled checkpoints {missing} were not written")
    metrics = final_metrics(spec, model_dir, table, data, train.device, train.earlier_eval)
    store.write_text(model_dir / "eval.json", json.dumps(metrics, indent=2))
    drop_resume_state(model_dir, keep="checkpoint_last.pt")  # the latest full checkpoint
    kept = rewind_table(model_dir) if rewind else pd.DataFrame({"step": []})
    if sorted(kept.step) != rewind:
        raise RuntimeError(f"model {name}: rewind checkpoints {rewind} expected, "
                           f"{sorted(kept.step)} written")
    return {"model": name, "kind": spec["kind"], "checkpoints": len(table),
            "seed": seed, "data_seed": seed if data_seed is None else data_seed,
            "rewind_steps": rewind,
            "disk_mb": round(sum(p.stat().st_size for p in model_dir.rglob("*")
                                 if p.is_file()) / 1e6, 1), **metrics}



def branch_model(name: str, spec: dict, data: Path, parent_dir: Path, step: int,
                 model_dir: Path, seed: int, data_seed: int, train: TrainConfig,
                 steps: list[int] | None = None, mask: Path | None = None) -> pd.DataFrame:
    """Train a child of the model in ``parent_dir`` from its full checkpoint at update
    ``step`` (weights, optimizer, schedule and data position: ``train.rewind``) to the
    parent's last update, its data order from ``data_seed``, its weights masked by ``mask``
    (a ticket's) where given, into ``model_dir`` (resumable); analysis checkpoints at
    ``steps`` (None: the last update only). Returns its checkpoints table."""
    start = rewind_checkpoint(parent_dir, step)
    last = int(spec["max_update"])
    args = fairseq_args(spec, data, model_dir / "fairseq", seed, train, last)
    env = hook_env(model_dir, steps or [last], train.threads,
                   data_seed + int(spec["seed_offset"]), mask=mask)
    table = run_fairseq(name, args + ["--continue-once", str(start)], env, model_dir,
                        train.threads, last)
    drop_resume_state(model_dir)
    return table


def unit(cfg: DictConfig, name: str, spec: dict, out: Path, inputs: dict) -> dict:
    """Unit function: train model ``name`` on the prepared data into ``out`` (an external
    series is imported instead: pipeline.models.external)."""
    if adapter(spec).external:
        return import_series(name, spec, out)
    return train_model(name, spec, inputs["prepare"], out, int(cfg.seed),
                       typed(cfg.train, TrainConfig), int(cfg.data_seed))


def files(cfg: DictConfig, spec: dict) -> dict[str, str]:
    """An external series' checkpoints by content (its import's key); none otherwise."""
    return adapter(spec).key_inputs(spec)


def check(unit_dir: Path) -> None:
    """A checkpoint changed after training is refused, not retrained."""
    checkpoints.verify(unit_dir)


# threads and parallel jobs do not change results, so they are not in the key
STAGE = Stage("train", ("seed", "data_seed", "train.device", "train.schedule",
                        "train.max_valid_steps", "train.fairseq", "train.earlier_eval",
                        "train.rewind"), ("prepare",),
              code=("pipeline.stages.train", "pipeline.fairseq_plugin"), unit=unit,
              resumable=True, check=check, files=files, data="prepare", disk=disk,
              cost=cost, table="trained models")
