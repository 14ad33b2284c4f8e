"""The live progress line of a training run (display only: it changes no result, so it is
outside the code hash). It reads the run's fairseq log and snapshot records."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

log = logging.getLogger("pipeline.train")
# the updates fairseq reports: "num_updates=N" (training lines, every log interval),
# "num_updates N" (each validation), "@ N updates" (each checkpoint saved or loaded)
UPDATES = re.compile(r"num_updates[= ](\d+)|@ (\d+) updates")


def updates_in(text: str) -> int:
    """The latest update count fairseq logged in ``text`` (0 when none)."""
    found = [int(a or b) for a, b in UPDATES.findall(text)]
    return found[-1] if found else 0


class Progress:
    """A progress line per model while fairseq trains: updates done of the total, speed, ETA
    and the last scheduled validation perplexity. A resumed run counts from the checkpoint it
    loaded; its speed, from the first count seen."""

    every = 30.0  # seconds between lines

    def __init__(self, name: str, total: int, model_dir: Path):
        self.name, self.total, self.dir = name, total, model_dir
        self.first: tuple[float, int] | None = None

    def updates(self) -> int:
        try:
            with open(self.dir / "train.log", "rb") as f:
                f.seek(max(0, f.seek(0, 2) - 20000))
                return updates_in(f.read().decode("utf-8", "replace"))
        except OSError:
            return 0

    def line(self) -> str:
        done = self.updates()
        if self.first is None and done:
            self.first = (time.monotonic(), done)
        line = f"train {self.name}: {done}/{self.total} updates ({done / self.total:.0%})"
        if self.first and done > self.first[1]:
            rate = (done - self.first[1]) / (time.monotonic() - self.first[0])
            line += f", {rate:.2f} upd/s, ETA {(self.total - done) / rate / 60:.1f} min"
        try:
            last = json.loads((self.dir / "checkpoints" / "snapshots.jsonl").read_text()
                              .splitlines()[-1])
            if last.get("valid_loss") is not None:
                line += f", valid ppl {2 ** last['valid_loss']:.1f} at step {last['step']}"
        except (OSError, IndexError, ValueError):
            pass
        return line

    def report(self) -> None:
        log.info(self.line())
