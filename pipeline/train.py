"""The train stage: every selected model trained with fairseq-train (a subprocess), with
analysis checkpoints on the configured schedule, a checkpoints.csv and an evaluation each."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from pipeline import checkpoints, evaluate
from pipeline.runtime import REPO_ROOT, subprocess_env
from pipeline.schedule import checkpoint_schedule

log = logging.getLogger(__name__)
PLUGIN = str(Path(REPO_ROOT) / "pipeline" / "fairseq_plugin")
LSTM_KEYS = ("layers", "embed_dim", "hidden", "dropout", "optimizer", "lr", "lr_shrink",
             "clip_norm", "tokens_per_sample", "batch_size")
DONE = ".done"


def longest_first(specs: dict[str, dict]) -> list[str]:
    """Model names with the Transformer first: it is the longest job (training and
    extraction), so the LSTMs fill the other workers meanwhile instead of waiting with it."""
    return sorted(specs, key=lambda name: specs[name]["kind"] != "nmt")


def model_specs(cfg: DictConfig) -> dict[str, dict]:
    """Every selected model's settings; a tagger takes its architecture and training set-up
    from its `base` LM preset, keeping only its own tag set, word stream and update budget."""
    # An experiment may size models the user deselected (model=[...]); those entries hold only
    # the experiment's deltas and no `kind`, and are not trained.
    models = {name: spec for name, spec in OmegaConf.to_container(cfg.model, resolve=True).items()
              if "kind" in spec}
    specs = {}
    for name, spec in models.items():
        if spec["kind"] == "tagger":
            base = models.get(spec["base"])
            if base is None or base["kind"] != "lm":
                raise ValueError(f"model {name}: base {spec['base']!r} is not a selected LM "
                                 f"preset (selected: {sorted(models)})")
            spec = {**{k: base[k] for k in LSTM_KEYS}, **spec}
        specs[name] = spec
    return specs


def fairseq_args(spec: dict, prepared: Path, save_dir: Path, seed: int, train: dict,
                 max_update: int) -> list[str]:
    """fairseq-train flags for one model (the same list the benchmark runs bare)."""
    kind = spec["kind"]
    if kind in ("lm", "tagger"):
        bins = prepared / "lm" / "bin"
        args = [str(bins / spec["words"])]
        if kind == "lm":
            args += ["--task", "language_modeling", "--arch", "lstm_lm"]
        else:
            args += ["--task", "next_tag_tagging", "--tags-data", str(bins / spec["tags"]),
                     "--arch", "lstm_tagger"]
        args += [
            "--decoder-layers", spec["layers"], "--decoder-embed-dim", spec["embed_dim"],
            "--decoder-hidden-size", spec["hidden"], "--decoder-out-embed-dim", spec["hidden"],
            "--dropout", spec["dropout"], "--optimizer", spec["optimizer"], "--lr", spec["lr"],
            "--lr-scheduler", "reduce_lr_on_plateau", "--lr-shrink", spec["lr_shrink"],
            "--clip-norm", spec["clip_norm"], "--criterion", "cross_entropy",
            "--sample-break-mode", "none", "--tokens-per-sample", spec["tokens_per_sample"],
            "--batch-size", spec["batch_size"], "--required-batch-size-multiple", 1,
        ]
    elif kind == "nmt":
        d = spec["embed_dim"]
        args = [
            str(prepared / "nmt" / "bin"), "--task", "translation", "--source-lang", "en",
            "--target-lang", "de", "--arch", "transformer", "--share-all-embeddings",
            "--encoder-layers", spec["layers"], "--decoder-layers", spec["layers"],
            "--encoder-embed-dim", d, "--decoder-embed-dim", d,
            "--encoder-ffn-embed-dim", spec["ffn_dim"], "--decoder-ffn-embed-dim",
            spec["ffn_dim"], "--encoder-attention-heads", spec["heads"],
            "--decoder-attention-heads", spec["heads"], "--dropout", spec["dropout"],
            "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", spec["lr"],
            "--lr-scheduler", "inverse_sqrt", "--warmup-updates", spec["warmup_updates"],
            "--clip-norm", spec["clip_norm"], "--criterion", "label_smoothed_cross_entropy",
            "--label-smoothing", spec["label_smoothing"], "--max-tokens", spec["max_tokens"],
        ]
    else:
        raise ValueError(f"unknown model kind {kind!r}")
    args += [
        "--user-dir", PLUGIN, "--seed", seed, "--max-update", max_update,
        "--save-dir", str(save_dir), "--save-interval-updates", max(1, max_update // 10),
        "--keep-interval-updates", 1, "--no-epoch-checkpoints", "--log-format", "simple",
        "--log-interval", max(1, min(100, max_update // 10)), "--num-workers", 0,
    ]
    if train.get("max_valid_steps") is not None:
        args += ["--max-valid-steps", train["max_valid_steps"]]
    if train["device"] == "cpu":
        args.append("--cpu")
    for key, value in (train.get("fairseq") or {}).items():
        args += [f"--{key.replace('_', '-')}", value]
    return [str(a) for a in args]


def fairseq_train_command(args: list[str]) -> list[str]:
    """fairseq-train through its module (so the plugin can patch fairseq_cli.train)."""
    return [sys.executable, "-c", "from fairseq_cli.train import cli_main; cli_main()", *args]


def dict_size(path: Path) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f) + 4  # fairseq adds <s> <pad> </s> <unk>


def parameter_estimate(spec: dict, prepared: Path) -> int:
    """Parameter count from the architecture, to size the schedule's disk use before training."""
    if spec["kind"] == "nmt":
        d, f, n = spec["embed_dim"], spec["ffn_dim"], spec["layers"]
        vocab = dict_size(prepared / "nmt" / "bin" / "dict.en.txt")
        ffn = 2 * d * f + f + d
        return vocab * d + n * (4 * (d * d + d) + ffn + 4 * d) + n * (8 * (d * d + d) + ffn + 6 * d)
    bins = prepared / "lm" / "bin"
    vocab = dict_size(bins / spec["words"] / "dict.txt")
    out = vocab if spec["kind"] == "lm" else dict_size(bins / spec["tags"] / "dict.txt")
    e, h = spec["embed_dim"], spec["hidden"]
    lstm = sum(4 * h * ((e if i == 0 else h) + h) + 8 * h for i in range(spec["layers"]))
    return vocab * e + lstm + h * out + out


def write_checkpoints_csv(model_dir: Path) -> pd.DataFrame:
    with open(model_dir / "checkpoints" / "snapshots.jsonl") as f:
        records = [json.loads(line) for line in f]
    table = pd.DataFrame(records).sort_values("step")
    table["valid_ppl"] = [2 ** v if v is not None and not math.isnan(v) else None
                          for v in table.valid_loss]
    table = table[checkpoints.COLUMNS]
    table.to_csv(model_dir / checkpoints.CSV, index=False)
    return table


def train_one(name: str, spec: dict, prepared: Path, model_dir: Path, seed: int,
              train: dict) -> dict:
    """Train (or resume) one model; returns its summary. A finished model is not retrained."""
    if (model_dir / DONE).is_file():
        log.info("model %s: already trained", name)
        return json.loads((model_dir / DONE).read_text())
    model_dir.mkdir(parents=True, exist_ok=True)
    steps = checkpoint_schedule(spec["max_update"], train["schedule"]["log_points"],
                                train["schedule"]["linear_points"])
    args = fairseq_args(spec, prepared, model_dir / "fairseq", seed, train, spec["max_update"])
    env = {**subprocess_env(train["threads"]), "PIPELINE_SCHEDULE": ",".join(map(str, steps)),
           "PIPELINE_SNAPSHOT_DIR": str(model_dir / "checkpoints")}
    log.info("model %s: training %d updates into %s; %d analysis checkpoints", name,
             spec["max_update"], model_dir, len(steps))
    # A crash of the fairseq process (seen once in CI: "terminate called without an active
    # exception" while saving its last checkpoint) is retried once: the rerun resumes from
    # checkpoint_last.pt and the schedule hook rewrites any analysis checkpoint after it.
    for attempt in (1, 2):
        with open(model_dir / "train.log", "a") as f:
            result = subprocess.run(fairseq_train_command(args), stdout=f,
                                    stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
        if result.returncode == 0:
            break
        tail = "".join(open(model_dir / "train.log").readlines()[-25:])
        if attempt == 2:
            raise RuntimeError(f"fairseq-train failed for {name} (log {model_dir}/train.log):"
                               f"\n{tail}")
        log.warning("model %s: fairseq-train exited with %d; resuming once:\n%s", name,
                    result.returncode, tail)
    table = write_checkpoints_csv(model_dir)
    missing = sorted(set(steps) - set(table.step))
    if missing:
        raise RuntimeError(f"model {name}: scheduled checkpoints {missing} were not written")
    final = model_dir / "checkpoints" / table.file.iloc[-1]
    metrics = evaluate.evaluate_model(spec, final, prepared, train)
    (model_dir / "eval.json").write_text(json.dumps(metrics, indent=2))
    for extra in (model_dir / "fairseq").glob("checkpoint*.pt"):
        if extra.name != "checkpoint_last.pt":  # keep only the latest full checkpoint
            extra.unlink()
    summary = {"model": name, "kind": spec["kind"], "checkpoints": len(table),
               "disk_mb": round(sum(p.stat().st_size for p in model_dir.rglob("*")
                                    if p.is_file()) / 1e6, 1), **metrics}
    (model_dir / DONE).write_text(json.dumps(summary))
    return summary


def run_train(cfg: DictConfig, out: Path, inputs: dict[str, Path]) -> dict:
    """Stage function: train every model in `cfg.model` into `out/<model>/`."""
    prepared = inputs["prepare"]
    train = OmegaConf.to_container(cfg.train, resolve=True)
    specs = model_specs(cfg)
    total = 0.0
    for name, spec in specs.items():
        n = len(checkpoint_schedule(spec["max_update"], train["schedule"]["log_points"],
                                    train["schedule"]["linear_points"]))
        mb = 4 * parameter_estimate(spec, prepared) / 1e6
        total += mb * (n + 3)  # analysis checkpoints + a full checkpoint with optimizer state
        log.info("model %-22s %2d checkpoints x %.1f MB", name, n, mb)
    log.info("the checkpoint schedule will take about %.0f MB", total)
    with ThreadPoolExecutor(max_workers=max(1, int(train["parallel"]))) as pool:
        futures = {name: pool.submit(train_one, name, specs[name], prepared, out / name,
                                     int(cfg.seed), train) for name in longest_first(specs)}
        summaries = {name: futures[name].result() for name in specs}
    table = pd.DataFrame(list(summaries.values()))
    table.to_csv(out / "models.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        log.info("trained models:\n%s", table.to_string(index=False))
    return {"models": list(summaries)}

