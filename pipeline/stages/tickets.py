"""The tickets stage, per model: lottery tickets by iterative magnitude pruning (Frankle &
Carbin 2019), rewound to the initialisation and to the first stable rewind point (late
rewinding, Frankle et al. 2020), over training.

Round r's mask removes ``rate`` of the weights the last round's mask kept, by global magnitude
over the pruned tensors (``prune``: weights, embeddings, biases) of the last round's trained
weights (round 1: the dense model's last). The ticket W_k ⊙ m_r trains to the end of the
model's schedule from the model's full checkpoint at k (its optimizer state, schedule and data
position too, and the model's own data seed), its pruned weights and their gradients zeroed at
every update (the hook's mask: ``prune``'s reparametrisation renames parameters, which fairseq
checkpoints and ``nn.LSTM``'s flat weights do not survive). The controls, at
``control_rounds`` of the late point: random masks with the ticket's sparsity per tensor (from
the same W_k), and the ticket's mask on a fresh initialisation (seed + ``reinit_seed_offset``)
trained from update 0. k_late is read from the model's stability unit by ``stability.threshold``
(analysis.stability), not by eye; a model never stable on the grid is rewound to its last
rewind point, marked unstable.

Each ticket's checkpoints: the rewound weights and its last update; its last checkpoint is
measured as the stability stage measures (validation loss; a translation model's BLEU) and
extracted. Writes tickets.parquet (``COLUMNS``) and tickets.json; resumable per ticket.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from analysis.fields import setting
from pipeline import checkpoints, jobs, store
from pipeline.config import typed
from pipeline.decoding import Decoding
from pipeline.models import adapter
from pipeline.stages.extract import ExtractConfig, extract_model
from pipeline.stages.stability import LOSS, branches, measure_with, trained
from pipeline.stages.stability import TABLE as STABILITY_TABLE
from pipeline.stages.stage import Stage
from pipeline.stages.train import (
    TrainConfig,
    branch_model,
    drop_resume_state,
    fairseq_args,
    hook_env,
    rewind_steps,
    run_fairseq,
)

log = logging.getLogger(__name__)
COLUMNS = ["model", "method", "rewind", "rewind_step", "rewind_share", "stable", "round",
           "sparsity", "measure", "higher_better", "value", "dense", "dir"]
TABLE = "tickets.parquet"
DENSE, IMP, RANDOM, REINIT = "dense", "imp", "random", "reinit"
INIT, LATE = "init", "late"
MASK = "mask.pt"


@dataclass
class TicketsConfig:
    """conf/tickets: the pruning rounds, rewind points and controls (the schema's
    ``tickets`` group)."""

    rate: float = setting(gt=0, lt=1, help="share of the kept weights each round removes")
    rounds: int = setting(ge=1)
    rewind: list[str] = setting(choices=(INIT, LATE), help="init: W_0; late: the first "
                                "stable rewind point")
    prune: list[str] = setting(choices=("weights", "embeddings", "biases"))
    controls: list[str] = setting(choices=(RANDOM, REINIT))
    control_rounds: list[int] = setting(ge=1, help="the late point's rounds with controls")
    reinit_seed_offset: int = setting(ge=1, help="the re-initialised ticket's seed: seed plus "
                                      "this")
    limit: int | None = setting(ge=1, help="validation sequences per measure (null: all)")
    decode: bool = setting(help="a translation model's greedy BLEU too")
    decode_limit: int | None = setting(ge=1)
    decoding: Decoding = setting()
    extract: bool = setting(help="extract each ticket's last checkpoint")
    device: str = setting(choices=("cpu", "cuda"))


def late_point(stability_dir: Path, threshold: float) -> tuple[int, bool]:
    """(k_late, whether it is stable): the first rewind point from which every later one is
    stable by the validation loss barrier's rule (the analysis's own tables); the last rewind
    point, unstable, if none."""
    from analysis.tables.stability import barriers, first_stable

    rows = pd.read_parquet(Path(stability_dir) / STABILITY_TABLE)
    table = barriers(rows[rows.measure == LOSS].assign(seed=0), threshold)
    first = float(first_stable(table).stable_step.iloc[0])
    return (int(table.step.max()), False) if first != first else (int(first), True)


def make_mask(name: str, spec: dict, data: Path, trained_checkpoint: Path,
              previous: Path | None, prune: list[str], rate: float, out: Path) -> None:
    """Round r's mask from round r-1's (None: every weight kept) and the weights
    ``trained_checkpoint`` holds (round r-1's last); written to ``out``."""
    import torch

    from pipeline import pruning

    model, _ = adapter(spec).load(spec, trained_checkpoint, data, "cpu")
    names = pruning.ticket_names(model, prune)
    params = dict(model.named_parameters())
    masks = (torch.load(previous, weights_only=True) if previous is not None
             else {n: torch.ones_like(params[n], device="cpu") for n in names})
    new = pruning.imp_masks(model, masks, rate)
    store.write_with(out, lambda tmp: torch.save(new, tmp))


def random_mask(like: Path, seed: int, out: Path) -> None:
    """The random control of the mask in ``like``, written to ``out``."""
    import torch

    from pipeline import pruning

    masks = pruning.random_like(torch.load(like, weights_only=True), seed)
    store.write_with(out, lambda tmp: torch.save(masks, tmp))


def ticket_dir(out: Path, method: str, rewind: str, r: int) -> Path:
    return Path(out) / f"{method}_{rewind}" / f"round_{r:02d}"


def _schedule(name: str, spec: dict, data: Path, model_dir: Path, out: Path,
              settings: TicketsConfig, train: TrainConfig, points: dict[str, int],
              seed: int, data_seed: int) -> list[list]:
    """The tickets' work as chains of steps (callables, jobs.run_chains): per rewind point,
    its rounds in order, each making its mask and then training its ticket; a control round's
    mask step starts its controls as chains of their own, beside the later rounds."""
    last = int(spec["max_update"])
    final = checkpoints.checkpoint_path(model_dir, last)
    threads = train.threads
    offset = int(spec["seed_offset"])

    def mask(label: str, k: int, r: int):
        def run() -> list[list]:
            where = ticket_dir(out, IMP, label, r)
            before = ticket_dir(out, IMP, label, r - 1)
            if not (where / MASK).is_file():
                where.mkdir(parents=True, exist_ok=True)
                jobs.call_in_process(
                    "pipeline.stages.tickets:make_mask", name, spec, data,
                    final if r == 1 else checkpoints.checkpoint_path(before, last),
                    None if r == 1 else before / MASK, settings.prune, settings.rate,
                    where / MASK, threads=threads)
            if label == LATE and r in settings.control_rounds:
                return [[control(m, label, k, r)] for m in settings.controls]
            return []
        return run

    def ticket(label: str, k: int, r: int):
        def run() -> None:
            where = ticket_dir(out, IMP, label, r)
            if not trained(where, last):
                branch_model(f"{name}/{label}/{r}", spec, data, model_dir, k, where, seed,
                             data_seed, train, steps=sorted({k, last}), mask=where / MASK)
        return run

    def control(method: str, label: str, k: int, r: int):
        def run() -> None:
            where = ticket_dir(out, method, label, r)
            if trained(where, last):
                return
            where.mkdir(parents=True, exist_ok=True)
            imp = ticket_dir(out, IMP, label, r) / MASK
            if method == RANDOM:
                if not (where / MASK).is_file():
                    jobs.call_in_process("pipeline.stages.tickets:random_mask", imp,
                                         seed * 1000 + r, where / MASK, threads=threads)
                branch_model(f"{name}/{method}/{r}", spec, data, model_dir, k, where, seed,
                             data_seed, train, steps=sorted({k, last}), mask=where / MASK)
                return
            fresh = seed + settings.reinit_seed_offset
            log.info("tickets %s: round %d's mask on a fresh initialisation (seed %d)", name,
                     r, fresh)
            args = fairseq_args(spec, data, where / "fairseq", fresh, train, last)
            env = hook_env(where, [0, last], threads, data_seed + offset, mask=imp)
            run_fairseq(f"{name}/{method}/{r}", args, env, where, threads, last)
            drop_resume_state(where)
        return run

    return [[step for r in range(1, settings.rounds + 1)
             for step in (mask(label, k, r), ticket(label, k, r))]
            for label, k in points.items()]


def measure_tickets(name: str, spec: dict, model_dir: Path, data: Path, out: Path,
                    tickets: list[dict], settings: TicketsConfig, extract: ExtractConfig
                    ) -> list[dict]:
    """Each ticket's (and the dense model's) last checkpoint measured, and each ticket
    extracted (``settings.extract``): the rows of tickets.parquet."""
    import torch

    from pipeline import pruning

    kind = adapter(spec)
    last = int(checkpoints.verify(model_dir).step.iloc[-1])
    model, task = kind.load(spec, checkpoints.checkpoint_path(model_dir, last), data,
                            settings.device)
    measure = measure_with(kind, spec, task, data, settings)
    higher = kind.quality_keys(spec)
    dense = measure(model)
    rows = [dict(t, measure=m, value=v, dense=dense[m], higher_better=higher.get(m, False))
            for t in [dict(method=DENSE, rewind="", rewind_step=-1, rewind_share=float("nan"),
                           stable=False, round=0, sparsity=0.0, dir="")]
            for m, v in dense.items()]
    for t in tickets:
        where = Path(out) / t["dir"]
        kind.load_weights(model, checkpoints.checkpoint_path(where, last), settings.device)
        masks = torch.load(where / MASK if (where / MASK).is_file()
                           else Path(out) / t["mask"], weights_only=True)
        t = dict(t, sparsity=pruning.mask_sparsity(masks)[1])
        t.pop("mask", None)
        for m, v in measure(model).items():
            rows.append(dict(t, measure=m, value=v, dense=dense[m],
                             higher_better=higher.get(m, False)))
        if settings.extract:
            extract_model(f"{name}/{t['dir']}", spec, where, data, where / "extract", extract,
                          last_only=True)  # compared with the model's last (final_similarity)
    return rows


def tickets_model(name: str, spec: dict, model_dir: Path, stability_dir: Path, data: Path,
                  out: Path, settings: TicketsConfig, threshold: float, train: TrainConfig,
                  extract: ExtractConfig, seed: int, data_seed: int) -> dict:
    """Every ticket of one model (``train.parallel`` rewind points at a time), measured and
    extracted; then out/tickets.parquet."""
    start = time.perf_counter()
    last = int(spec["max_update"])
    late, stable = late_point(stability_dir, threshold)
    points = {label: (0 if label == INIT else late) for label in settings.rewind}
    if points.get(INIT) == points.get(LATE):
        points.pop(INIT)  # stable from the initialisation: one chain
    jobs.run_chains(_schedule(name, spec, data, model_dir, out, settings, train, points, seed,
                              data_seed), train.parallel)
    tickets = []
    for label, k in points.items():
        for r in range(1, settings.rounds + 1):
            methods = [IMP] + (settings.controls if label == LATE
                               and r in settings.control_rounds else [])
            for method in methods:
                where = ticket_dir(out, method, label, r)
                tickets.append(dict(
                    method=method, rewind=label, rewind_step=0 if method == REINIT else k,
                    rewind_share=(0 if method == REINIT else k) / last,
                    stable=stable or label == INIT, round=r,
                    dir=str(where.relative_to(out)),
                    mask=str((ticket_dir(out, IMP, label, r) / MASK).relative_to(out))))
    rows = jobs.call_in_process("pipeline.stages.tickets:measure_tickets", name, spec,
                                model_dir, data, out, tickets, settings, extract,
                                threads=train.threads)
    table = pd.DataFrame(rows).assign(model=name)[COLUMNS]
    store.write_with(Path(out) / TABLE, lambda tmp: table.to_parquet(tmp, index=False))
    summary = {"late": late, "stable": stable, "points": points, "tickets": len(tickets),
               "seconds": round(time.perf_counter() - start, 1)}
    store.write_text(Path(out) / "tickets.json", json.dumps(summary, indent=1))
    return summary


def validate_unit(unit: Path) -> None:
    """Raise store.Invalid when a tickets unit's table or a ticket's checkpoint is missing or
    changed."""
    try:
        table = pd.read_parquet(Path(unit) / TABLE, columns=["dir"])
    except (OSError, ValueError) as err:
        raise store.Invalid(f"{unit}: tickets table unreadable ({err})") from None
    for where in sorted(set(table.dir) - {""}):
        try:
            checkpoints.verify(Path(unit) / where)
        except checkpoints.CheckpointError as err:
            raise store.Invalid(str(err)) from None


def cost(cfg: DictConfig, spec: dict, data: Path) -> float:
    """The tickets' training, in the train stage's work (parameters x tokens x updates): each
    round and control trains from its rewind point (the late one taken as the grid's
    middle, unknown before the stability stage has run) to the end."""
    settings = typed(cfg.tickets, TicketsConfig)
    steps = rewind_steps(spec, typed(cfg.train, TrainConfig))
    last = int(spec["max_update"])
    late = steps[len(steps) // 2] if steps else 0
    trainings = sum((last - (0 if label == INIT else late)) * settings.rounds
                    for label in settings.rewind)
    trainings += len(settings.controls) * len(settings.control_rounds) * last
    return adapter(spec).work(spec, data) * trainings / last


def unit(cfg: DictConfig, name: str, spec: dict, out: Path, inputs: dict) -> dict:
    """Unit function: ``tickets_model`` of the model's train and stability units."""
    return tickets_model(name, spec, inputs["train"], inputs["stability"], inputs["prepare"],
                         out, typed(cfg.tickets, TicketsConfig), float(cfg.stability.threshold),
                         typed(cfg.train, TrainConfig), typed(cfg.extract, ExtractConfig),
                         int(cfg.seed), int(cfg.data_seed))


STAGE = Stage("tickets", ("tickets", "stability.threshold", "extract", "train.device",
                          "train.max_valid_steps", "train.fairseq", "seed", "data_seed"),
              ("prepare", "train", "stability"),
              code=("pipeline.stages.tickets",), unit=unit, resumable=True,
              check=validate_unit, applies=branches, data="prepare", cost=cost,
              table="tickets")
