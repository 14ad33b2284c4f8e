"""Write weights-only analysis checkpoints at exactly the scheduled update numbers.

fairseq saves only at fixed intervals (`--save-interval-updates`). Saving every update and
pruning would cost a full checkpoint (with optimizer state) per update, so instead this hook
wraps these fairseq functions, when the environment names a schedule:

- `checkpoint_utils.load_checkpoint`: right after fairseq builds (or restores) the model, a
  fresh run writes step 0, the initialisation itself, before any update;
- `fairseq_cli.train.validate_and_save`, called after every update: at a scheduled update it
  validates (fairseq validates only on its own intervals) and writes the weights;
- `Trainer.train_step`: counts training tokens and keeps the update's loss;
- `Trainer.save_checkpoint`: stores the token count and last loss in fairseq's checkpoint for
  resuming;
- `fairseq_cli.train.train`: a run resumed at (or past) `--max-update` trains no further
  update (fairseq would run one more before checking);
- `FairseqTask.get_batch_iterator`: a run resumed in epoch E > 1 gets the batches an
  uninterrupted run has (fairseq fixes them once, with seed + 1, when it first builds the
  iterator; a resumed run would build them with seed + E).

Two more seams serve branching (the stability and tickets stages train children from a
parent's weights W_k):

- `PIPELINE_DATA_SEED`: the data order (fairseq's batch iterator) and the per-update noise
  (`Trainer._set_seed`: dropout) follow this seed instead of `--seed`, which then sets the
  initialisation only;
- `PIPELINE_REWIND=<steps>` with `PIPELINE_REWIND_DIR=dir`: at those updates (0: the
  initialisation) a full checkpoint (weights, optimizer, learning-rate scheduler, data
  position) is saved as fairseq saves `checkpoint_last.pt`, so that a child started from it
  with `--continue-once` goes on exactly as this run did (with the same data seed);
- `PIPELINE_MASK=file`: a {parameter name: 0/1 tensor} mask (a lottery ticket) is applied to
  the weights before every update and to their gradients, so pruned weights stay exactly 0.

A run resumed from fairseq's end-of-epoch checkpoint also replays the end-of-epoch learning
rate step (fairseq saves that checkpoint before it steps, so the resumed run would skip a
plateau shrink). With both, a resumed run writes the same bytes as an uninterrupted one.

Each analysis checkpoint is fairseq's own checkpoint dict without optimizer state, so fairseq's
loaders read it; one JSON line per checkpoint goes to `snapshots.jsonl` (with `batch`, a digest
of its update's example ids). The paths of this run (save dir, data, a branch's start) are left
out of the stored config, so identical runs write byte-identical checkpoints wherever their
artifacts live. fairseq's own `checkpoint_last.pt` (with optimizer
state) is kept for resuming. Environment: PIPELINE_SCHEDULE=0,1,2,4,... and
PIPELINE_SNAPSHOT_DIR=dir; for the resume tests, PIPELINE_FAULT=<update>:<signal>:<whom>
(whom: `group`, the run's process group as a terminal's Ctrl-C reaches it, or `parent`, the
pipeline process alone, PIPELINE_PID) sends that signal right after that update.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import logging
import os
import signal
import time

import torch
from fairseq import checkpoint_utils
from fairseq.tasks import FairseqTask
from fairseq.trainer import Trainer
from omegaconf import OmegaConf

from data_prep.sources import sha256_file

log = logging.getLogger("pipeline.schedule")
SCHEDULE = {int(s) for s in os.environ.get("PIPELINE_SCHEDULE", "").split(",") if s.strip()}
OUT = os.environ.get("PIPELINE_SNAPSHOT_DIR", "")
STATE = {"tokens": 0, "train_loss": None, "valid_s": 0.0, "batch": None}
FAULT = os.environ.get("PIPELINE_FAULT", "")
DATA_SEED = os.environ.get("PIPELINE_DATA_SEED", "")
REWIND = {int(s) for s in os.environ.get("PIPELINE_REWIND", "").split(",") if s.strip()}
REWIND_DIR = os.environ.get("PIPELINE_REWIND_DIR", "")
MASK = os.environ.get("PIPELINE_MASK", "")


def snapshot_path(step: int) -> str:
    return os.path.join(OUT, f"step_{step:07d}.pt")


def _records() -> dict[int, dict]:
    path = os.path.join(OUT, "snapshots.jsonl")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {r["step"]: r for r in map(json.loads, f)}


# where this run's files live: not part of the model (loaders are given the data explicitly)
RUN_PATHS = frozenset({"save_dir", "data", "tags_data", "tensorboard_logdir", "continue_once"})


def portable_cfg(cfg) -> dict:
    """The training config without this run's paths (RUN_PATHS, wherever they occur: fairseq
    keeps whole argparse namespaces in some groups)."""
    def strip(node):
        if isinstance(node, argparse.Namespace):
            return argparse.Namespace(**strip(vars(node)))
        if isinstance(node, dict):
            return {k: None if k in RUN_PATHS else strip(v) for k, v in node.items()}
        return node

    return strip(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))


def epochs_done(epoch_itr) -> float:
    """Passes over the training data so far: whole epochs plus the share of this one."""
    n = len(epoch_itr)
    return round(epoch_itr.epoch - 1 + (epoch_itr.iterations_in_epoch / n if n else 0.0), 6)


def write_snapshot(trainer, epoch_itr, valid_loss) -> None:
    """Save the weights (no optimizer state) atomically and append its record."""
    step = trainer.get_num_updates()
    epoch = epoch_itr.epoch
    state = {  # the fields of Trainer.state_dict() that loaders need, without optimizer state
        "args": None,
        "cfg": portable_cfg(trainer.cfg),
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
    start = time.perf_counter()
    torch.save(state, tmp)
    os.replace(tmp, path)
    digest = sha256_file(path)
    record = {"step": step, "epoch": epoch, "epochs": epochs_done(epoch_itr),
              "tokens_seen": STATE["tokens"],
              "train_loss": STATE["train_loss"], "valid_loss": valid_loss,
              "lr": trainer.get_lr(), "file": os.path.basename(path),
              "bytes": os.path.getsize(path), "sha256": digest, "time": time.time(),
              "save_s": round(time.perf_counter() - start, 3), "valid_s": STATE["valid_s"],
              "batch": STATE["batch"]}
    with open(os.path.join(OUT, "snapshots.jsonl"), "a") as f:
        f.write(json.dumps(record) + "\n")


def rewind_path(step: int) -> str:
    return os.path.join(REWIND_DIR, f"step_{step:07d}.pt")


def write_rewind(trainer, epoch_itr, valid_loss) -> None:
    """A full checkpoint at this update, with what fairseq's own checkpoint holds (its
    ``extra_state``: the data position and the validation loss that a plateau scheduler
    reads), atomically; one JSON line per checkpoint to ``rewind.jsonl``."""
    step = trainer.get_num_updates()
    if getattr(epoch_itr, "_cur_epoch_itr", None) is None:  # no batch drawn yet (step 0)
        position = {"version": 2, "epoch": epoch_itr.epoch, "iterations_in_epoch": 0,
                    "shuffle": True}
    else:
        position = epoch_itr.state_dict()
    extra = {"train_iterator": position, "val_loss": valid_loss}
    if hasattr(checkpoint_utils.save_checkpoint, "best"):
        extra["best"] = checkpoint_utils.save_checkpoint.best
    os.makedirs(REWIND_DIR, exist_ok=True)
    path = rewind_path(step)
    trainer.consolidate_optimizer()  # as fairseq's save_checkpoint does first
    trainer.save_checkpoint(path + ".tmp", extra)
    os.replace(path + ".tmp", path)
    record = {"step": step, "file": os.path.basename(path), "sha256": sha256_file(path),
              "valid_loss": valid_loss}
    with open(os.path.join(REWIND_DIR, "rewind.jsonl"), "a") as f:
        f.write(json.dumps(record) + "\n")


def _validate(cfg, trainer, task, epoch_itr):
    """fairseq's validation at a scheduled step (its time goes into the step's record)."""
    from fairseq_cli.train import validate

    STATE["valid_s"] = 0.0
    if cfg.dataset.disable_validation:
        return None
    start = time.perf_counter()
    loss = validate(cfg, trainer, task, epoch_itr, cfg.dataset.valid_subset.split(","))[0]
    STATE["valid_s"] = round(time.perf_counter() - start, 3)
    return loss


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
        STATE["train_loss"] = (extra_state or {}).get("pipeline_train_loss")
        _replay_epoch_end(trainer, extra_state, epoch_itr)
        step = trainer.get_num_updates()
        done = _prune_after(step)
        if step == 0:
            n = sum(p.numel() for p in trainer.model.parameters())
            log.info("analysis checkpoints: %d x ~%.1f MB (%d parameters) = ~%.0f MB",
                     len(SCHEDULE), 4 * n / 1e6, n, 4 * n * len(SCHEDULE) / 1e6)
        # step 0 (the initialisation), or a scheduled step whose snapshot a killed run did not
        # write after saving checkpoint_last
        if MASK:
            _apply_mask(trainer.model)
        loss = None
        if (step in SCHEDULE and step not in done) or (
                step in REWIND and not os.path.exists(rewind_path(step))):
            loss = _validate(trainer.cfg, trainer, trainer.task, epoch_itr)
        if step in SCHEDULE and step not in done:
            write_snapshot(trainer, epoch_itr, loss)
        if step in REWIND and not os.path.exists(rewind_path(step)):
            write_rewind(trainer, epoch_itr, loss)
        return extra_state, epoch_itr

    return load_checkpoint


def _replay_epoch_end(trainer, extra_state, epoch_itr) -> None:
    """Resumed from the checkpoint fairseq saved at the end of epoch E-1 (before its
    `lr_step(E-1, val_loss)`): take that step now, as the uninterrupted run did. The inner
    torch scheduler's epoch counter is put back where the uninterrupted run has it (fairseq's
    own `lr_step(E)` on loading already advanced it)."""
    itr = (extra_state or {}).get("train_iterator") or {}
    if not itr or itr.get("iterations_in_epoch", 0) != 0 or epoch_itr.epoch <= 1:
        return
    inner = getattr(trainer.lr_scheduler, "lr_scheduler", None)
    last_epoch = getattr(inner, "last_epoch", None)
    trainer.lr_step(epoch_itr.epoch - 1, extra_state.get("val_loss"))
    if last_epoch is not None:
        inner.last_epoch = last_epoch
    log.info("resumed at the start of epoch %d: its learning rate step replayed (lr %g)",
             epoch_itr.epoch, trainer.get_lr())


def _wrap_get_batch_iterator(original):
    signature = inspect.signature(original)

    def get_batch_iterator(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        built_once = (not a["disable_iterator_cache"] and not a["update_epoch_batch_itr"]
                      and self.can_reuse_epoch_itr(a["dataset"])
                      and a["dataset"] not in self.dataset_to_epoch_iter
                      and not getattr(self.cfg, "rebuild_batches", False))
        epoch = a["epoch"]
        if not built_once or epoch <= 1:
            return original(*bound.args, **bound.kwargs)
        a["epoch"] = 1  # the batches an uninterrupted run fixed in epoch 1
        itr = original(*bound.args, **bound.kwargs)
        itr.epoch = epoch
        return itr

    return get_batch_iterator


def _wrap_validate_and_save(original):
    def validate_and_save(cfg, trainer, task, epoch_itr, valid_subsets, end_of_epoch):
        valid_losses, should_stop = original(cfg, trainer, task, epoch_itr, valid_subsets,
                                             end_of_epoch)
        step = trainer.get_num_updates()
        snapshot = step in SCHEDULE and not os.path.exists(snapshot_path(step))
        rewind = step in REWIND and not os.path.exists(rewind_path(step))
        if snapshot or rewind:
            loss = valid_losses[0]
            STATE["valid_s"] = 0.0  # fairseq validated on its own interval (counted there)
            if loss is None:
                loss = _validate(cfg, trainer, task, epoch_itr)
            if snapshot:
                write_snapshot(trainer, epoch_itr, loss)
            if rewind:
                write_rewind(trainer, epoch_itr, loss)
        return valid_losses, should_stop

    return validate_and_save


def _wrap_save_checkpoint(original):
    def save_checkpoint(self, filename, extra_state):
        extra_state["pipeline_tokens_seen"] = STATE["tokens"]
        extra_state["pipeline_train_loss"] = STATE["train_loss"]
        return original(self, filename, extra_state)

    return save_checkpoint


def _wrap_data_seed(original):
    """A Trainer method that reads ``cfg.common.seed`` for the data order or the update's
    noise, run with PIPELINE_DATA_SEED in its place."""
    def method(self, *args, **kwargs):
        init = self.cfg.common.seed
        self.cfg.common.seed = int(DATA_SEED)
        try:
            return original(self, *args, **kwargs)
        finally:
            self.cfg.common.seed = init

    return method


MASKS: dict = {}


def _apply_mask(model) -> None:
    """Zero the pruned weights (PIPELINE_MASK) and, once, hook their gradients to zero."""
    if not MASKS:
        masks = torch.load(MASK, map_location="cpu", weights_only=True)
        params = dict(model.named_parameters())
        unknown = sorted(set(masks) - set(params))
        if unknown:
            raise ValueError(f"{MASK}: no parameters {unknown} in this model")
        for name, mask in masks.items():
            mask = mask.to(params[name].device, params[name].dtype)
            params[name].register_hook(lambda grad, m=mask: grad * m)
            MASKS[name] = (params[name], mask)
    with torch.no_grad():
        for param, mask in MASKS.values():
            param.mul_(mask)


def _batch_digest(samples) -> str:
    """A digest of the update's examples (their dataset ids, in order): which batch it was."""
    ids = [int(i) for s in samples if s and "id" in s for i in s["id"].flatten().tolist()]
    return hashlib.sha1(",".join(map(str, ids)).encode()).hexdigest()[:16]


def _wrap_train_step(original):
    def train_step(self, samples, *args, **kwargs):
        STATE["tokens"] += sum(int(s.get("ntokens", 0)) for s in samples if s)
        STATE["batch"] = _batch_digest(samples)
        if MASK:
            _apply_mask(self.model)
        output = original(self, samples, *args, **kwargs)
        if MASK:
            _apply_mask(self.model)
        if output is not None and "loss" in output:
            STATE["train_loss"] = float(output["loss"])
        if FAULT:
            _inject_fault(self.get_num_updates())
        return output

    return train_step


def _inject_fault(step: int) -> None:
    """PIPELINE_FAULT's signal, once this run reaches its update (tests only)."""
    at, name, whom = FAULT.split(":")
    if step == int(at):
        sig = signal.Signals[name]
        if whom == "group":
            os.killpg(os.getpgrp(), sig)
        else:
            os.kill(int(os.environ["PIPELINE_PID"]), sig)


def _wrap_train(original):
    def train(cfg, trainer, task, epoch_itr):
        if trainer.get_num_updates() >= cfg.optimization.max_update:
            return [None], True  # resumed at the end: nothing left to train
        return original(cfg, trainer, task, epoch_itr)

    return train


if SCHEDULE and OUT:
    import fairseq_cli.train as fairseq_train

    os.makedirs(OUT, exist_ok=True)
    checkpoint_utils.load_checkpoint = _wrap_load_checkpoint(checkpoint_utils.load_checkpoint)
    fairseq_train.validate_and_save = _wrap_validate_and_save(fairseq_train.validate_and_save)
    fairseq_train.train = _wrap_train(fairseq_train.train)
    FairseqTask.get_batch_iterator = _wrap_get_batch_iterator(FairseqTask.get_batch_iterator)
    Trainer.train_step = _wrap_train_step(Trainer.train_step)
    Trainer.save_checkpoint = _wrap_save_checkpoint(Trainer.save_checkpoint)
    if DATA_SEED:
        Trainer._set_seed = _wrap_data_seed(Trainer._set_seed)
        Trainer.get_train_iterator = _wrap_data_seed(Trainer.get_train_iterator)
