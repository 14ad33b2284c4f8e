"""The artifact store: one directory per (experiment, stage, key), or per (experiment, stage,
model, key) for per-model stages, written atomically.

The key is a hash of exactly the config a stage (or a model's unit) depends on plus its
inputs' keys, so changing an unrelated setting (or the model seed, for prepare) reuses the
cached result. Work goes into `<key>.partial/`; only when it succeeds is a `.done.json` marker
written and the directory renamed to `<key>/`. A crash leaves no half-written `<key>/`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

DONE = ".done.json"


def stage_key(stage: str, config: Any, inputs: dict[str, str]) -> str:
    """Short hash of the stage's name, config and input keys."""
    payload = json.dumps({"stage": stage, "config": config, "inputs": inputs}, sort_keys=True,
                         default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def stage_dir(root: Path, experiment: str, stage: str, key: str) -> Path:
    return Path(root) / experiment / stage / key


def unit_dir(root: Path, experiment: str, stage: str, model: str, key: str) -> Path:
    return Path(root) / experiment / stage / model / key


def is_done(path: Path) -> bool:
    return (Path(path) / DONE).is_file()


def read_done(path: Path) -> dict:
    return json.loads((Path(path) / DONE).read_text())


def partial_dir(final: Path, resume: bool) -> Path:
    """The scratch directory for `final`; emptied first unless the work can resume from it."""
    tmp = final.with_name(final.name + ".partial")
    if tmp.exists() and not resume:
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp


def commit(tmp: Path, final: Path, record: dict) -> None:
    """Mark `tmp` done and move it to `final` (replacing a stale copy forced to recompute)."""
    record = {**record, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (tmp / DONE).write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
