"""The stage registry and the runner that walks it with the artifact store."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline import store

log = logging.getLogger(__name__)

StageFn = Callable[[DictConfig, Path, dict[str, Path]], dict]


@dataclass(frozen=True)
class Stage:
    """A step of the chain: the config subtrees its key depends on and the stages it reads."""

    name: str
    config: tuple[str, ...]
    needs: tuple[str, ...] = ()
    run: StageFn | None = None
    version: int = 1
    resumable: bool = False
    check: Callable[[Path], None] | None = None  # validates a cached result before reuse
    pending: str = ""  # for stages not built yet: where the work is tracked


def _prepare(cfg: DictConfig, out: Path, inputs: dict[str, Path]) -> dict:
    import pandas as pd

    from data_prep.prepare import prepare

    summary = prepare(OmegaConf.to_container(cfg.data, resolve=True), out, cfg.mirror,
                      cfg.cache_dir, cfg.download)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        log.info("corpus statistics (%s):\n%s", out.name, summary["stats"].to_string(index=False))
    return {"stats_csv": str(out / "stats.csv"), "rows": len(summary["stats"])}


def _train(cfg: DictConfig, out: Path, inputs: dict[str, Path]) -> dict:
    from pipeline.train import run_train

    return run_train(cfg, out, inputs)


def _extract(cfg: DictConfig, out: Path, inputs: dict[str, Path]) -> dict:
    from pipeline.extract import run_extract

    return run_extract(cfg, out, inputs)


def _analyze(cfg: DictConfig, out: Path, inputs: dict[str, Path]) -> dict:
    from pipeline.analyze_stage import run_analyze

    return run_analyze(cfg, out, inputs)


def _plot(cfg: DictConfig, out: Path, inputs: dict[str, Path]) -> dict:
    from pipeline.plot_stage import run_plot

    return run_plot(cfg, out, inputs)


def _verify_models(train_dir: Path) -> None:
    from pipeline.checkpoints import verify

    for model_dir in sorted(p for p in train_dir.iterdir() if p.is_dir()):
        verify(model_dir)


REGISTRY: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("prepare", ("data",), run=_prepare),
        # threads and parallel jobs do not change results, so they are not in the key
        Stage("train", ("model", "seed", "train.device", "train.schedule",
                        "train.max_valid_steps", "train.fairseq"), ("prepare",), run=_train,
              resumable=True, check=_verify_models),
        Stage("extract", ("extract",), ("prepare", "train"), run=_extract, resumable=True),
        Stage("analyze", ("analysis",), ("train", "extract"), run=_analyze),
        Stage("plot", ("plot",), ("analyze",), run=_plot),
    )
}


def _config_of(cfg: DictConfig, keys: tuple[str, ...]) -> dict:
    """The values of (possibly dotted) config keys, as plain data."""
    values = {}
    for k in keys:
        v = OmegaConf.select(cfg, k)
        values[k] = OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
    return values


def stage_location(cfg: DictConfig, name: str, keys: dict[str, str]) -> tuple[str, Path]:
    """The key and directory of stage `name`, given the keys of the stages it needs."""
    stage = REGISTRY[name]
    key = store.stage_key(name, stage.version, _config_of(cfg, stage.config),
                          {n: keys[n] for n in stage.needs})
    return key, store.stage_dir(Path(cfg.artifacts_dir), cfg.name, name, key)


def run_pipeline(cfg: DictConfig) -> dict[str, dict]:
    """Run the requested stages in order; cached stages are skipped and said to be."""
    unknown = [s for s in cfg.stages if s not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages are {list(REGISTRY)}")
    bad_force = [s for s in cfg.force if s not in REGISTRY]
    if bad_force:
        raise ValueError(f"force={bad_force}: unknown stage(s); stages are {list(REGISTRY)}")
    requested = [s for s in REGISTRY if s in cfg.stages]  # registry order
    keys: dict[str, str] = {}
    dirs: dict[str, Path] = {}
    report: dict[str, dict] = {}
    for name, stage in REGISTRY.items():
        if stage.run is None:
            if name in requested:
                log.warning("stage %s: NOT BUILT YET (%s); skipped", name, stage.pending)
                report[name] = {"status": "not built yet", "pending": stage.pending}
            continue
        missing = [n for n in stage.needs if n not in keys]
        if missing:
            if name in requested:
                raise RuntimeError(f"stage {name} needs {missing}, which cannot run yet")
            continue
        keys[name], dirs[name] = stage_location(cfg, name, keys)
        if name not in requested:
            if not store.is_done(dirs[name]) and any(
                    name in REGISTRY[r].needs for r in requested):
                raise RuntimeError(f"stage {name} has not been run for this config "
                                   f"({dirs[name]}); add it to stages=[...]")
            continue
        final = dirs[name]
        if store.is_done(final) and name not in cfg.force:
            if stage.check is not None:
                stage.check(final)
            log.info("stage %s: cached at %s", name, final)
            report[name] = {"status": "cached", "dir": str(final)}
            continue
        log.info("stage %s: running into %s", name, final)
        start = time.perf_counter()
        tmp = store.partial_dir(final, stage.resumable)
        try:
            summary = stage.run(cfg, tmp, {n: dirs[n] for n in stage.needs})
        except BaseException:
            if not stage.resumable:  # nothing half-written is left behind
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        seconds = round(time.perf_counter() - start, 1)
        store.commit(tmp, final, {"stage": name, "key": keys[name], "seconds": seconds,
                                  "config": _config_of(cfg, stage.config),
                                  "inputs": {n: keys[n] for n in stage.needs},
                                  "summary": summary})
        log.info("stage %s: done in %.1f s", name, seconds)
        report[name] = {"status": "ran", "dir": str(final), "seconds": seconds}
    for name in requested:
        log.info("%-8s %s", name, report.get(name, {}).get("status", "?"))
    return report
