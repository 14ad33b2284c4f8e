"""fairseq-preprocess with fixed dictionaries.

It runs in-process (importing fairseq costs ~6 s, once, instead of once per corpus); only
training must run as a subprocess of a Hydra job. fairseq's log goes to a file, and the root
logger's level and handlers are restored afterwards (`import fairseq` sets DEBUG).
"""

from __future__ import annotations

import logging
from pathlib import Path


def fairseq_preprocess(args: list[str], log: Path) -> None:
    """Run `fairseq-preprocess ARGS` in-process, logging to `log`."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    file_handler = logging.FileHandler(log)
    try:
        from fairseq import options
        from fairseq_cli import preprocess

        root.handlers = [file_handler]
        root.setLevel(logging.INFO)
        preprocess.main(options.get_preprocessing_parser().parse_args(args))
    finally:
        file_handler.close()
        root.handlers = handlers
        root.setLevel(level)


def binarize_mono(destdir: Path, dict_path: Path, splits: dict[str, Path], workers: int,
                  log: Path) -> None:
    """Binarise one token stream per split with a fixed dictionary (LM words or a tag set)."""
    args = ["--only-source", "--srcdict", str(dict_path), "--destdir", str(destdir),
            "--workers", str(workers), "--dataset-impl", "mmap"]
    for name, flag in (("train", "--trainpref"), ("valid", "--validpref"), ("test", "--testpref")):
        if name in splits:
            args += [flag, str(splits[name])]
    fairseq_preprocess(args, log)


def binarize_pair(destdir: Path, prefixes: dict[str, Path], src: str, tgt: str, workers: int,
                  log: Path, dict_path: Path | None = None) -> None:
    """Binarise a parallel corpus with one joined dictionary (shared embeddings)."""
    args = ["--source-lang", src, "--target-lang", tgt, "--destdir", str(destdir),
            "--joined-dictionary", "--workers", str(workers), "--dataset-impl", "mmap"]
    if dict_path is not None:
        args += ["--srcdict", str(dict_path)]
    for name, flag in (("train", "--trainpref"), ("valid", "--validpref"), ("test", "--testpref")):
        if name in prefixes:
            args += [flag, str(prefixes[name])]
    fairseq_preprocess(args, log)
