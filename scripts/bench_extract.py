"""Extraction time per checkpoint against a bare forward pass over the same probe batches.

For each model, in one run: a bare `model(...)` forward under no_grad over the probe's batches,
our extraction of every layer without gradients (arrays written to a temporary store), and with
gradients. Prints seconds per checkpoint and the ratios (target <= 1.25x without gradients).

    python scripts/bench_extract.py --artifacts ARTIFACTS --experiment smoke [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from analysis import repstore  # noqa: E402
from pipeline import checkpoints, evaluate, extract  # noqa: E402
from pipeline.config import CONFIG_DIR, CONFIG_NAME  # noqa: E402
from pipeline.runtime import set_threads  # noqa: E402
from pipeline.train import model_specs  # noqa: E402


def bare_forward(model, spec, task, rows, batch_size):
    """The plain forward pass the extraction is measured against."""
    with torch.no_grad():
        if spec["kind"] == "nmt":
            src_s, tgt_s = extract.sentences(rows, "source"), extract.sentences(rows, "target")
            for _, src, prev, *_ in extract.nmt_batches(src_s, tgt_s, task.source_dictionary,
                                                        batch_size):
                model(src, (src != task.source_dictionary.pad()).sum(1), prev)
        else:
            d = task.source_dictionary
            for inp, _, _ in extract.lstm_batches(extract.sentences(rows, "lm"), d,
                                                  task.target_dictionary, None, batch_size):
                model(inp)


def ours(model, spec, task, rows, grads, tag_column, ex):
    """Our extraction of one checkpoint, arrays written to a temporary store."""
    with tempfile.TemporaryDirectory() as tmp:
        a, g = extract.extract_checkpoint(model, spec, task, rows, grads, tag_column,
                                          ex["batch_size"])
        repstore.write_arrays(Path(tmp), 0, "act", a, ex["dtype"])
        if g:
            repstore.write_arrays(Path(tmp), 0, "grad", g, ex["dtype"])


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
    ex = OmegaConf.to_container(cfg.extract, resolve=True)
    base = opts.artifacts / opts.experiment
    (prepared,) = [p for p in (base / "prepare").iterdir() if p.is_dir()
                   and not p.name.endswith(".partial")]
    (train_dir,) = [p for p in (base / "train").iterdir() if p.is_dir()
                    and not p.name.endswith(".partial")]
    probe_tokens = pd.read_parquet(prepared / "probe_tokens.parquet")
    print(f"experiment {opts.experiment}; seconds per checkpoint, best of {opts.repeat}; 1 thread")
    print(f"{'model':22s} {'probe':12s} {'tokens':>7s} {'bare':>7s} {'acts':>7s} {'ratio':>6s}"
          f" {'+grads':>7s} {'ratio':>6s}")
    for name, spec in model_specs(cfg).items():
        table = checkpoints.read_table(train_dir / name)
        path = checkpoints.checkpoint_path(train_dir / name, int(table.step.iloc[-1]))
        overrides = ({"data": str(prepared / "nmt" / "bin")} if spec["kind"] == "nmt"
                     else evaluate.stream_overrides(spec, prepared))
        model, _, task = evaluate.load_model(path, overrides)
        probe = ex["nmt_probes"][0] if spec["kind"] == "nmt" else ex["lm_probes"][0]
        rows = extract.probe_rows(probe_tokens, probe, ex["max_tokens_per_probe"])
        if spec["kind"] != "nmt":
            rows = rows.assign(side="lm")
        tag_column = extract.tag_column_for(spec, probe)
        bare = best_of(opts.repeat, bare_forward, model, spec, task, rows, ex["batch_size"])
        acts = best_of(opts.repeat, ours, model, spec, task, rows, False, tag_column, ex)
        grads = best_of(opts.repeat, ours, model, spec, task, rows, True, tag_column, ex)
        n = len(rows)
        print(f"{name:22s} {probe:12s} {n:7d} {bare:7.2f} {acts:7.2f} {acts / bare:6.2f}"
              f" {grads:7.2f} {grads / bare:6.2f}")
    print("ratio = our time per checkpoint / bare forward (target <= 1.25 without gradients)")


if __name__ == "__main__":
    main()
