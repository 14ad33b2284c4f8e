"""Runtime rules for fairseq-fixed 0.12 with torch 2.13 (measured), applied in one place.

R2: one torch thread on CPU (on a shared 2-core box more threads make tiny models 20-45x slower).
R3: fairseq loads checkpoints with torch.load's old default; only for checkpoints we wrote.
R4: `import fairseq` sets the root logger to DEBUG; restore the level afterwards.
R5: fairseq training runs as a subprocess from Hydra jobs (see subprocess_env).
"""

from __future__ import annotations

import functools
import logging
import os
import warnings

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def set_threads(threads: int = 1) -> None:
    """Limit BLAS/OpenMP and torch to `threads` threads (before any heavy work)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    import torch

    torch.set_num_threads(threads)


def import_fairseq():
    """Import fairseq with the checkpoint-loading patch (R3) and the root log level kept (R4).

    Only call this to load checkpoints the pipeline wrote itself: weights_only=False unpickles.
    """
    import torch

    if not isinstance(torch.load, functools.partial):
        torch.load = functools.partial(torch.load, weights_only=False)
    root = logging.getLogger()
    level = root.level
    logging.getLogger("fairseq").setLevel(logging.WARNING)  # in-process loads are not news
    import fairseq

    root.setLevel(level)
    logging.getLogger("fairseq").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*pin_memory.*")  # fairseq's loader on CPU
    # fairseq passes a bool padding mask with a float causal mask; torch warns on every call
    warnings.filterwarnings("ignore", message=".*mismatched key_padding_mask and attn_mask.*")
    return fairseq


def subprocess_env(threads: int = 1) -> dict[str, str]:
    """Environment for fairseq command-line subprocesses (R2, R3)."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONWARNINGS": "ignore"}
