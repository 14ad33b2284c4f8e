"""What the adapters of external checkpoint series share (someone else's training run: a folder
of fairseq checkpoints, a model's Hugging Face revisions): their train unit imports the series
instead of training, and its key holds every checkpoint's content hash, so a changed file
makes the unit, and all that reads it, stale.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd

from pipeline import checkpoint_files, checkpoints, store
from pipeline.models import ModelKind, Spec, adapter

STEP = re.compile(r"(?:^|[_-])step_?(\d+)$|^checkpoint_\d+_(\d+)$")


def step_of(name: str) -> int | None:
    """The training step in a checkpoint's name: ``step1000`` (Pythia's revisions),
    ``step_0001000``, fairseq's ``checkpoint_<epoch>_<updates>``; None when it has none."""
    match = STEP.search(Path(name).stem if name.endswith(".pt") else name)
    return None if match is None else int(next(g for g in match.groups() if g is not None))


class ExternalKind(ModelKind):
    """A series of checkpoints made elsewhere: ``series`` lists them, nothing is trained."""

    external = True

    def series(self, spec: Spec) -> list[tuple[int, Path]]:
        """(step, checkpoint file or directory) of every checkpoint, by step."""
        raise NotImplementedError

    def source(self, spec: Spec) -> str:
        """Where the series came from, for the report."""
        raise NotImplementedError

    def steps(self, spec: Spec) -> list[int]:
        return [step for step, _ in self.series(spec)]

    def key_inputs(self, spec: Spec) -> dict[str, str]:
        """{"checkpoint:<step>": content hash}: what the import unit's key reads."""
        return {f"checkpoint:{step}": checkpoints.content_hash(path)
                for step, path in self.series(spec)}

    def work(self, spec: Spec, data: Path) -> float:
        return 0.0

    def parameters(self, spec: Spec, data: Path) -> int:
        return 0  # nothing is written but links

    def tokens_per_update(self, spec: Spec) -> int:
        return 0

    def evaluate(self, spec: Spec, checkpoint: Path, data: Path, device: str) -> dict:
        return {}  # the series' own evaluation is its owner's; none is recomputed here


def import_series(name: str, spec: Spec, out: Path) -> dict:
    """The train unit of an external series: a link per checkpoint under out/checkpoints/,
    checkpoints.csv (step, size, sha256; no losses or learning rates: unknown here),
    an empty eval.json and source.json (where the series came from). Every checkpoint is
    opened first (pipeline.checkpoint_files): one that does not is refused with its step and
    path, and nothing is written."""
    kind = adapter(spec)
    series = kind.series(spec)
    if not series:
        raise ValueError(f"model {name}: no checkpoints found in {kind.source(spec)}")
    checkpoint_files.check_series(series)
    folder = Path(out) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for step, path in series:
        link = folder / f"step_{step:07d}{'.pt' if path.is_file() else ''}"
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(path.resolve(), link)
        size = path.stat().st_size if path.is_file() else sum(
            p.stat().st_size for p in path.rglob("*") if p.is_file())
        rows.append(dict(step=step, bytes=size, sha256=checkpoints.content_hash(path),
                         file=link.name))
    table = pd.DataFrame(rows).reindex(columns=checkpoints.COLUMNS)
    store.write_with(Path(out) / checkpoints.CSV, lambda tmp: table.to_csv(tmp, index=False))
    store.write_text(Path(out) / "eval.json", "{}")
    store.write_text(Path(out) / "source.json", json.dumps(
        {"kind": spec["kind"], "source": kind.source(spec),
         "checkpoints": {str(s): str(p) for s, p in series}}, indent=1))
    return {"model": name, "kind": spec["kind"], "checkpoints": len(rows),
            "source": kind.source(spec)}
