"""Write weights-only analysis checkpoints at exactly the scheduled update numbers.

fairseq saves only at fixed intervals (`--save-interval-updates`). Saving every update and
pruning would cost a full checkpoint (with optimizer state) per update, so instead this hook
wraps four fairseq functions, when the environment names a schedule:

- `checkpoint_utils.load_checkpoint`: right after fairseq builds (or restores) the model, a
  fresh run writes step 0, the initialisation itself, before any update;
- `fairseq_cli.train.validate_and_save`, called after every update: at a scheduled update it
  validates (fairseq validates only on its own intervals) and writes the weights;
- `Trainer.train_step`: counts training tokens and keeps the update's loss;
- `Trainer.save_checkpoint`: stores the token count in fairseq's checkpoint for resuming.

Each analysis checkpoint is fairseq's own checkpoint dict without optimizer state, so fairseq's
loaders read it; one JSON line per checkpoint goes to `snapshots.jsonl`. fairseq's own
`checkpoint_last.pt` (with optimizer state) is kept for resuming. Environment:
PIPELINE_SCHEDULE=0,1,2,4,... and PIPELINE_SNAPSHOT_DIR=dir.
"""

from __future__ import annotations

import json
import logging
import os
import time

import torch
from fairseq import checkpoint_utils
from fairseq.trainer import Trainer
from omegaconf import OmegaConf

from data_prep.sources import sha256_file

log = logging.getLogger("pipeline.schedule")
SCHEDULE = {int(s) for s in os.environ.get("PIPELINE_SCHEDULE", "").split(",") if s.strip()}
OUT = os.environ.get("PIPELINE_SNAPSHOT_DIR", "")
STATE = {"tokens": 0, "train_loss": None}


def snapshot_path(step: int) -> str:
    return os.path.join(OUT, f"step_{step:07d}.pt")


def _records() -> dict[int, dict]:
    path = os.path.join(OUT, "snapshots.jsonl")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {r["step"]: r for r in map(json.loads, f)}


def write_snapshot(trainer, epoch: int, valid_loss) -> None:
    """Save the weights (no optimizer state) atomically and append its record."""
    step = trainer.get_num_updates()
    state = {  # the fields of Trainer.state_dict() that loaders need, without optimizer state
        "args": None,
        "cfg": OmegaConf.to_container(trainer.cfg, resolve=True, enum_to_str=True),
        "model": trainer.model.state_dict(),
        "criterion": None,
        "optimizer_history": [{
            "criterion_name": trainer.get_criterion().__class__.__name__,
            "optimizer_name": trainer.optimizer.__class__.__name__,
            "lr_scheduler_state": trainer.lr_scheduler.state_dict(),
            "num_updates": step,
        }],
        "task_state": trainer.task.state_dict(),
        "extra_state": {"step": step, "epoch": epoch, "tokens_seen": STATE["tokens"]},
    }
    path = snapshot_path(step)
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)
    record = {"step": step, "epoch": epoch, "tokens_seen": STATE["tokens"],
              "train_loss": STATE["train_loss"], "valid_loss": valid_loss,
              "lr": trainer.get_lr(), "file": os.path.basename(path),
              "bytes": os.path.getsize(path), "sha256": sha256_file(path), "time": time.time()}
    with open(os.path.join(OUT, "snapshots.jsonl"), "a") as f:
        f.write(json.dumps(record) + "\n")


def _validate(cfg, trainer, task, epoch_itr):
    from fairseq_cli.train import validate

    if cfg.dataset.disable_validation:
        return None
    return validate(cfg, trainer, task, epoch_itr, cfg.dataset.valid_subset.split(","))[0]


def _prune_after(step: int) -> dict[int, dict]:
    """On resume from update `step`, drop analysis checkpoints written after it by the killed
    run: training from `step` writes them again, so the records stay one sequence."""
    records = _records()
    kept = {s: r for s, r in records.items() if s <= step}
    for s in set(records) - set(kept):
        if os.path.exists(snapshot_path(s)):
            os.remove(snapshot_path(s))
    with open(os.path.join(OUT, "snapshots.jsonl"), "w") as f:
        for s in sorted(kept):
            f.write(json.dumps(kept[s]) + "\n")
    return kept


def _wrap_load_checkpoint(original):
    def load_checkpoint(cfg, trainer, **kwargs):
        extra_state, epoch_itr = original(cfg, trainer, **kwargs)
        STATE["tokens"] = int((extra_state or {}).get("pipeline_tokens_seen", 0))
        done = _prune_after(trainer.get_num_updates())
        if trainer.get_num_updates() == 0 and 0 in SCHEDULE and 0 not in done:
            n = sum(p.numel() for p in trainer.model.parameters())
            log.info("analysis checkpoints: %d x ~%.1f MB (%d parameters) = ~%.0f MB",
                     len(SCHEDULE), 4 * n / 1e6, n, 4 * n * len(SCHEDULE) / 1e6)
            full_cfg = trainer.cfg
            write_snapshot(trainer, epoch_itr.epoch,
                           _validate(full_cfg, trainer, trainer.task, epoch_itr))
        return extra_state, epoch_itr

    return load_checkpoint


def _wrap_validate_and_save(original):
    def validate_and_save(cfg, trainer, task, epoch_itr, valid_subsets, end_of_epoch):
        valid_losses, should_stop = original(cfg, trainer, task, epoch_itr, valid_subsets,
                                             end_of_epoch)
        step = trainer.get_num_updates()
        if step in SCHEDULE and not os.path.exists(snapshot_path(step)):
            loss = valid_losses[0]
            if loss is None:
                loss = _validate(cfg, trainer, task, epoch_itr)
            write_snapshot(trainer, epoch_itr.epoch, loss)
        return valid_losses, should_stop

    return validate_and_save


def _wrap_save_checkpoint(original):
    def save_checkpoint(self, filename, extra_state):
        extra_state["pipeline_tokens_seen"] = STATE["tokens"]
        return original(self, filename, extra_state)

    return save_checkpoint


def _wrap_train_step(original):
    def train_step(self, samples, *args, **kwargs):
        STATE["tokens"] += sum(int(s.get("ntokens", 0)) for s in samples if s)
        output = original(self, samples, *args, **kwargs)
        if output is not None and "loss" in output:
            STATE["train_loss"] = float(output["loss"])
        return output

    return train_step


if SCHEDULE and OUT:
    import fairseq_cli.train as fairseq_train

    os.makedirs(OUT, exist_ok=True)
    checkpoint_utils.load_checkpoint = _wrap_load_checkpoint(checkpoint_utils.load_checkpoint)
    fairseq_train.validate_and_save = _wrap_validate_and_save(fairseq_train.validate_and_save)
    Trainer.train_step = _wrap_train_step(Trainer.train_step)
    Trainer.save_checkpoint = _wrap_save_checkpoint(Trainer.save_checkpoint)
