"""Training throughput of our train stage against bare fairseq-train with the same flags.

For each model preset, both runs train the same number of updates from the same prepared data
in the same process environment, one after the other; tokens/second is training tokens over the
wall time of the fairseq-train process (start-up included in both). Our run adds the schedule
hook: analysis checkpoints with a validation pass at every scheduled step.

    python scripts/bench_train.py --prepared ARTIFACTS/<exp>/prepare/<key> [--experiment smoke]
                                  [--updates 200] [--models lstm_lm_paper,transformer_nmt_small]
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
from omegaconf import OmegaConf  # noqa: E402

from pipeline.config import (  # noqa: E402
    CONFIG_DIR,
    CONFIG_NAME,
    model_specs,  # noqa: E402
)
from pipeline.runtime import REPO_ROOT, subprocess_env  # noqa: E402
from pipeline.schedule import checkpoint_schedule  # noqa: E402
from pipeline.train import fairseq_args, fairseq_train_command  # noqa: E402


def run(args: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(fairseq_train_command(args), env=env, cwd=REPO_ROOT,
                            capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return seconds, result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", required=True, type=Path)
    parser.add_argument("--experiment", default="smoke")
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--models", default="lstm_lm_paper,tagger_pos,transformer_nmt_small")
    opts = parser.parse_args()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose(CONFIG_NAME, overrides=[f"experiment={opts.experiment}"])
    train = OmegaConf.to_container(cfg.train, resolve=True)
    specs = model_specs(cfg)
    print(f"experiment {opts.experiment}, {opts.updates} updates per run, 1 thread, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'model':24s} {'bare s':>8s} {'ours s':>8s} {'bare tok/s':>11s} {'ours tok/s':>11s}"
          f" {'overhead':>9s} {'ckpts':>6s}")
    for name in opts.models.split(","):
        spec = specs[name]
        steps = checkpoint_schedule(opts.updates, train["schedule"]["log_points"],
                                    train["schedule"]["linear_points"])
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            env = subprocess_env(train["threads"])
            bare_args = fairseq_args(spec, opts.prepared, tmp / "bare", 1, train, opts.updates)
            bare_s, _ = run(bare_args, env)
            ours_env = {**env, "PIPELINE_SCHEDULE": ",".join(map(str, steps)),
                        "PIPELINE_SNAPSHOT_DIR": str(tmp / "ours" / "checkpoints")}
            ours_args = fairseq_args(spec, opts.prepared, tmp / "ours", 1, train, opts.updates)
            ours_s, _ = run(ours_args, ours_env)
            with open(tmp / "ours" / "checkpoints" / "snapshots.jsonl") as f:
                records = [json.loads(line) for line in f]
        tokens = max(r["tokens_seen"] for r in records)  # identical data and seed in both runs
        print(f"{name:24s} {bare_s:8.1f} {ours_s:8.1f} {tokens / bare_s:11.0f} "
              f"{tokens / ours_s:11.0f} {ours_s / bare_s:9.3f} {len(records):6d}")
    print("overhead = bare tokens/s / ours tokens/s (target <= 1.05)")


if __name__ == "__main__":
    main()
