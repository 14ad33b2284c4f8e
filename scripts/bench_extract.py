"""Extraction time per checkpoint against a bare forward pass over the same probe batches.

For each model, in one run: a bare `model(...)` forward under no_grad over the probe's batches,
our extraction of every layer without gradients (arrays written to a temporary store), and with
gradients. Prints seconds per checkpoint and the ratios (target <= 1.25x without gradients).

    python scripts/bench_extract.py --artifacts ARTIFACTS --experiment smoke [--repeat 3]

(the models of that experiment's config, trained under ARTIFACTS, are found by their keys)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from analysis import repstore  # noqa: E402
from pipeline import checkpoints, evaluate  # noqa: E402
from pipeline.config import CONFIG_DIR, CONFIG_NAME, model_specs, typed  # noqa: E402
from pipeline.models import adapter  # noqa: E402
from pipeline.plan import plan  # noqa: E402
from pipeline.runtime import set_threads  # noqa: E402
from pipeline.stages import extract  # noqa: E402


def ours(model, spec, task, rows, grads, label_column, ex):
    """Our extraction of one checkpoint, arrays written to a temporary store."""
    with tempfile.TemporaryDirectory() as tmp:
        a, g = adapter(spec).states(model, task, spec, rows, label_column, grads,
                                    ex.batch_size)
        repstore.write_arrays(Path(tmp), 0, "act", a, ex.dtype)
        if g:
            repstore.write_arrays(Path(tmp), 0, "grad", g, ex.dtype)


def best_of(repeat, fn, *args):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", required=True, type=Path)
    parser.add_argument("--experiment", default="smoke")
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    set_threads(1)
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose(CONFIG_NAME, overrides=[f"experiment={opts.experiment}"])
    ex = typed(cfg.extract, extract.ExtractConfig)
    with open_dict(cfg):
        cfg.artifacts_dir = str(opts.artifacts)
    nodes = plan(cfg, seeds=False)
    prepared = nodes["prepare"].dir
    manifest = extract.probe_manifest(prepared)
    probe_tokens = pd.read_parquet(prepared / "probe_tokens.parquet")
    print(f"experiment {opts.experiment}; seconds per checkpoint, best of {opts.repeat}; 1 thread")
    print(f"{'model':22s} {'probe':12s} {'tokens':>7s} {'bare':>7s} {'acts':>7s} {'ratio':>6s}"
          f" {'+grads':>7s} {'ratio':>6s}")
    for name, spec in model_specs(cfg).items():
        kind, model_dir = adapter(spec), nodes["train"].units[name].dir
        table = checkpoints.read_table(model_dir)
        path = checkpoints.checkpoint_path(model_dir, int(table.step.iloc[-1]))
        model, _, task = evaluate.load_model(path, kind.load_overrides(spec, prepared))
        probe = extract.model_probes(spec, manifest, ex.probes)[0]
        rows = extract.probe_rows(probe_tokens, probe, ex.max_tokens_per_probe)
        label_column = kind.label_column(spec, manifest[probe])
        bare = best_of(opts.repeat, kind.forward, model, task, rows, ex.batch_size)
        acts = best_of(opts.repeat, ours, model, spec, task, rows, False, label_column, ex)
        grads = best_of(opts.repeat, ours, model, spec, task, rows, True, label_column, ex)
        n = len(rows)
        print(f"{name:22s} {probe:12s} {n:7d} {bare:7.2f} {acts:7.2f} {acts / bare:6.2f}"
              f" {grads:7.2f} {grads / bare:6.2f}")
    print("ratio = our time per checkpoint / bare forward (target <= 1.25 without gradients)")


if __name__ == "__main__":
    main()
