"""The artifact store: one directory per (experiment, stage, key), or per (experiment, stage,
model, key) for per-model stages, written atomically and under a lock.

The key is a hash of exactly the config a stage (or a model's unit) depends on, its inputs'
keys and the code it runs, so changing an unrelated setting (or the model seed, for prepare)
reuses the cached result. Work goes into `<key>.partial/`; only when it succeeds is a
`.done.json` marker written and the directory renamed to `<key>/`. A crash leaves no
half-written `<key>/`. `<key>.lock` (an OS file lock, released when its process dies, however
it dies) keeps two runs from working on one result at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)
DONE = ".done.json"


class Invalid(RuntimeError):
    """A cached or resumed result failed validation (missing, truncated or inconsistent)."""


def stage_key(stage: str, config: Any, inputs: dict[str, str], code: dict[str, str]) -> str:
    """Short hash of the stage's name, config, input keys and code."""
    payload = json.dumps({"stage": stage, "config": config, "inputs": inputs, "code": code},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def stage_dir(root: Path, experiment: str, stage: str, key: str) -> Path:
    return Path(root) / experiment / stage / key


def unit_dir(root: Path, experiment: str, stage: str, model: str, key: str) -> Path:
    return Path(root) / experiment / stage / model / key


def is_done(path: Path) -> bool:
    return (Path(path) / DONE).is_file()


def read_done(path: Path) -> dict:
    return json.loads((Path(path) / DONE).read_text())


def missing_files(path: Path) -> list[str]:
    """The files a finished result recorded that are gone or changed size, each named (none
    for a record written before results listed their files)."""
    try:
        files = read_done(path).get("files", {})
    except (OSError, ValueError) as err:
        return [f"{Path(path) / DONE}: unreadable ({err})"]
    out = []
    for name, size in files.items():
        file = Path(path) / name
        if not file.is_file():
            out.append(f"{file}: missing")
        elif file.stat().st_size != size:
            out.append(f"{file}: {file.stat().st_size} bytes, {size} when it was written")
    return out


def partial_path(final: Path) -> Path:
    """Where the scratch directory of `final` lives (a stopped run's partial result)."""
    return final.with_name(final.name + ".partial")


def partial_dir(final: Path, resume: bool) -> Path:
    """The scratch directory for `final`; emptied first unless the work can resume from it."""
    tmp = partial_path(final)
    if tmp.exists() and not resume:
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp


def commit(tmp: Path, final: Path, record: dict) -> None:
    """Mark `tmp` done and move it to `final` (replacing a stale copy forced to recompute).
    The record lists every file with its size, so a later reader can find one deleted or
    truncated (``missing_files``)."""
    files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*"))
             if p.is_file()}
    record = {**record, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "files": files}
    write_text(tmp / DONE, json.dumps(record, indent=2, sort_keys=True, default=str))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def reopen(final: Path, keep: bool) -> None:
    """Take an invalid finished result back: into its scratch directory (``keep``: a
    resumable stage then redoes only what is bad), or away entirely."""
    tmp = partial_path(final)
    if tmp.exists():
        shutil.rmtree(tmp)
    if keep:
        (final / DONE).unlink()
        final.rename(tmp)
    else:
        shutil.rmtree(final)


@contextlib.contextmanager
def lock(final: Path, label: str) -> Iterator[None]:
    """Hold `<final>.lock`; say so when another run holds it and wait for it."""
    path = final.with_name(final.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    held = FileLock(str(path))
    try:
        held.acquire(timeout=0)
    except Timeout:
        log.info("%s: another run is working on %s; waiting for it", label, final)
        held.acquire()
    try:
        yield
    finally:
        held.release()


def write_text(path: Path, text: str) -> None:
    """Write a file so that it appears complete or not at all."""
    write_with(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_with(path: Path, writer) -> None:
    """``writer(tmp_path)`` then rename onto ``path``: readers never see a partial file."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")  # writers infer formats from it
    writer(tmp)
    os.replace(tmp, path)


def changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two nested config dicts."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_keys(a, b, f"{name}.")
        elif a != b:
            out.append(name)
    return out
