"""Training throughput of our train stage against bare fairseq-train with the same flags.

For each model preset of an experiment, in one run and one after the other: bare
`fairseq-train` with exactly our flags (no schedule hook), then our train unit's fairseq run
(the hook writes the analysis checkpoints, validating at each). Tokens/s is training tokens
over the wall time of the fairseq process (start-up included in both); the overhead ratio
(bare tokens/s over ours; target <= 1.05) is split into its parts from our run's records:
validation at the scheduled checkpoints, checkpoint writing, and the rest. The final
evaluation (test perplexity, accuracy, BLEU) is timed on its own: it is not training.

    python scripts/bench_train.py --experiment default [--updates 300] [--models a,b]
                                  [--mirror DIR] [--artifacts DIR]

Prepares the experiment's data if needed (the prepare stage, cached). Run it on an idle
machine: it prints the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hydra import compose, initialize_config_dir  # noqa: E402

from pipeline import evaluate  # noqa: E402
from pipeline.config import CONFIG_DIR, CONFIG_NAME, model_specs, typed  # noqa: E402
from pipeline.plan import plan  # noqa: E402
from pipeline.runner import run_pipeline  # noqa: E402
from pipeline.runtime import REPO_ROOT, subprocess_env  # noqa: E402
from pipeline.stages.train import TrainConfig, fairseq_args, schedule  # noqa: E402


def timed(args: list[str], env: dict) -> float:
    start = time.perf_counter()
    command = [sys.executable, "-m", "fairseq_cli.train", *args]  # as a user would run it
    result = subprocess.run(command, env=env, cwd=REPO_ROOT,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="default")
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--models", default=None, help="comma-separated presets (default all)")
    parser.add_argument("--mirror", default=os.environ.get("PIPELINE_MIRROR"))
    parser.add_argument("--artifacts", default=None)
    opts = parser.parse_args()
    overrides = [f"experiment={opts.experiment}", "stages=[prepare]"]
    if opts.mirror:
        overrides.append(f"mirror={opts.mirror}")
    if opts.artifacts:
        overrides.append(f"artifacts_dir={opts.artifacts}")
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose(CONFIG_NAME, overrides=overrides)
    run_pipeline(cfg)  # the prepared data (cached after the first time)
    data = plan(cfg, seeds=False)["prepare"].dir
    train = typed(cfg.train, TrainConfig)
    specs = model_specs(cfg)
    names = opts.models.split(",") if opts.models else list(specs)
    print(f"experiment {opts.experiment}, {opts.updates} updates per run, "
          f"{train.threads} thread(s); load average before {os.getloadavg()}")
    head = (f"{'model':22s} {'bare s':>7s} {'ours s':>7s} {'bare tok/s':>10s} {'ours tok/s':>10s}"
            f" {'ratio':>6s} {'valid s':>8s} {'save s':>7s} {'other s':>8s} {'ckpts':>5s}"
            f" {'eval s':>7s}")
    print(head)
    for name in names:
        spec = {**specs[name], "max_update": opts.updates}
        steps = schedule(spec, train)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            env = subprocess_env(train.threads)
            bare_s = timed(fairseq_args(spec, data, tmp / "bare" / "fairseq", 1, train,
                                        opts.updates), env)
            ours_env = {**env, "PIPELINE_SCHEDULE": ",".join(map(str, steps)),
                        "PIPELINE_SNAPSHOT_DIR": str(tmp / "ours" / "checkpoints")}
            ours_s = timed(fairseq_args(spec, data, tmp / "ours" / "fairseq", 1, train,
                                        opts.updates), ours_env)
            with open(tmp / "ours" / "checkpoints" / "snapshots.jsonl") as f:
                records = [json.loads(line) for line in f]
            final = tmp / "ours" / "checkpoints" / records[-1]["file"]
            start = time.perf_counter()
            evaluate.evaluate_model(spec, final, data, train.device)
            eval_s = time.perf_counter() - start
        tokens = max(r["tokens_seen"] for r in records)  # identical data and seed in both runs
        valid_s = sum(r.get("valid_s", 0.0) for r in records)
        save_s = sum(r.get("save_s", 0.0) for r in records)
        other = ours_s - bare_s - valid_s - save_s
        print(f"{name:22s} {bare_s:7.1f} {ours_s:7.1f} {tokens / bare_s:10.0f} "
              f"{tokens / ours_s:10.0f} {ours_s / bare_s:6.3f} {valid_s:8.1f} {save_s:7.1f} "
              f"{other:8.1f} {len(records):5d} {eval_s:7.1f}", flush=True)
    print(f"ratio = ours s / bare s = bare tokens/s / ours tokens/s (target <= 1.05); "
          f"valid/save = time in the scheduled validations / checkpoint writes; other = the "
          f"rest of the difference. Load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
