"""Entry point: `python -m pipeline [experiment=NAME] [stages=[...]] [mirror=DIR]
[artifacts_dir=DIR] [seed=N] [force=[...]]`."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from pipeline.config import CONFIG_DIR, CONFIG_NAME
from pipeline.runtime import set_threads
from pipeline.stages import run_pipeline


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> None:
    set_threads(int(cfg.train.threads))
    run_pipeline(cfg)


if __name__ == "__main__":
    main()
