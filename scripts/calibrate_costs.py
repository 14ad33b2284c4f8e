"""Remake the runner's cost table (pipeline/stage_costs.csv) from measured stage times: for
every per-model stage that declares its work (``cost``), each finished unit's seconds under
ARTIFACTS (every key: all seeds) divided by the model's work at this config; per stage and
model kind, the median. Run it on an idle machine's run with the experiment's usual
``train.parallel``: the rates include what sharing the cores costs.

    python scripts/calibrate_costs.py --artifacts ARTIFACTS [--experiment default] \
        [--source "default seeds 1-5, 2 cores"]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hydra import compose, initialize_config_dir  # noqa: E402

from pipeline import costs, store  # noqa: E402
from pipeline.config import CONFIG_DIR, CONFIG_NAME, model_specs  # noqa: E402
from pipeline.plan import plan  # noqa: E402
from pipeline.stages.registry import REGISTRY  # noqa: E402


def newest_done(folder: Path) -> Path:
    """The newest finished result under ``folder`` (the prepared data the units read)."""
    done = [p.parent for p in folder.glob(f"*/{store.DONE}")]
    if not done:
        raise SystemExit(f"{folder}: no finished result")
    return max(done, key=lambda p: store.read_done(p).get("finished", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", required=True, type=Path)
    parser.add_argument("--experiment", default="default")
    parser.add_argument("--source", default="", help="where the times were measured")
    parser.add_argument("--out", type=Path, default=costs.TABLE)
    args = parser.parse_args()
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose(CONFIG_NAME, [f"experiment={args.experiment}",
                                    f"artifacts_dir={args.artifacts.resolve()}"])
    nodes = plan(cfg, seeds=False)
    specs = model_specs(cfg)
    runs = []
    for stage in (s for s in REGISTRY.values() if s.cost is not None):
        data = newest_done(nodes[stage.data].dir.parent)
        for model, target in nodes[stage.name].units.items():
            work = float(stage.cost(cfg, specs[model], data))
            for done in sorted(target.dir.parent.glob(f"*/{store.DONE}")):
                seconds = store.read_done(done.parent).get("seconds")
                if isinstance(seconds, int | float):
                    runs.append((stage.name, specs[model]["kind"], model, seconds, work))
                    print(f"{stage.name:10s} {model:26s} {seconds:7.1f} s  work {work:.3g}")
    rows = costs.calibrate(runs, args.source or f"{args.experiment} in {args.artifacts}")
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=costs.COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"{args.out}: {len(rows)} rates")


if __name__ == "__main__":
    main()
