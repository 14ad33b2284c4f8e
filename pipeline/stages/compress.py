"""The compress stage, per model: at some of its extracted checkpoints, the model's quality
with one layer projected onto its top-k directions (PCA, SVCCA against the last checkpoint,
random), and with its weights pruned one-shot (global magnitude, random at the same sparsity
per weight matrix). Raghu et al. (2017) §4.4 and Frankle & Carbin (2019) on our checkpoints.

The directions are fitted on the extract stage's activations of one probe (``fit_probes``),
never on the evaluation data; the quality is the adapter's own measure on its held-out data
(``ModelKind.quality``). Writes compression.parquet, one row per variant and quality measure
(``COLUMNS``), and compress.json; resumable: each checkpoint's rows are kept as they finish.
k* and s* are the analysis's (analysis.tables.compression), so a tolerance changes no result
here.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from analysis import repstore
from analysis.fields import setting
from analysis.steps import nearest
from pipeline import checkpoints, jobs, store
from pipeline.config import typed
from pipeline.decoding import Decoding
from pipeline.models import adapter
from pipeline.stages.extract import ExtractConfig, extracted_checkpoints
from pipeline.stages.stage import Stage
from pipeline.stages.train import TrainConfig, schedule

log = logging.getLogger(__name__)
COLUMNS = ["model", "role", "step", "share", "compress", "layer", "side", "dim", "method", "k",
           "sparsity", "measure", "primary", "value", "reference", "higher_better", "fit_probe",
           "fit_tokens"]
TABLE = "compression.parquet"


@dataclass
class CompressConfig:
    """conf/compress: where and how each model is compressed (the schema's ``compress``
    group)."""

    checkpoints: list[float] | None = setting(gt=0, le=1, help="the extracted checkpoints "
                                              "nearest these shares of training; null: all")
    fit_probes: list[str] = setting(help="the fit tokens: the first of these probes the model "
                                    "extracted")
    directions: list[str] = setting(choices=("pca", "svcca", "random"))
    k_base: int = setting(ge=2, help="k = 1, k_base, k_base², ... below the width, and the "
                          "width")
    variance: float = setting(gt=0, le=1, help="svcca: the SVD cut on each side")
    sparsities: list[float] = setting(gt=0, lt=1)
    pruning: list[str] = setting(choices=("magnitude", "random"))
    limit: int | None = setting(ge=1, help="the first N evaluation sequences (null: all)")
    decode_at: list[float] = setting(ge=0, le=1, help="BLEU too at the checkpoints nearest "
                                     "these shares")
    decode_methods: list[str] = setting(choices=("pca", "svcca", "random", "magnitude"),
                                        help="... for these directions and prunings")
    decoding: Decoding = setting()
    device: str = setting(choices=("cpu", "cuda"))


def chosen(steps: list[int], shares: list[float] | None, final: int) -> list[int]:
    """The steps of ``steps`` nearest each share of ``final`` (each once, in order); all of
    them for None."""
    if shares is None:
        return sorted(steps)
    return sorted({steps[nearest(steps, s, final)] for s in shares})


def fit_probe(extract_dir: Path, wanted: list[str]) -> str:
    """The first of ``wanted`` that the model's extraction holds."""
    have = json.loads((Path(extract_dir) / "model.json").read_text())["gradients"]
    for probe in wanted:
        if probe in have:
            return probe
    raise ValueError(f"compress.fit_probes {wanted}: the model extracted none of them "
                     f"(it has {sorted(have)}); add one of those")


def stream_seed(*parts) -> int:
    """A seed from its parts, the same in every process (unlike hash())."""
    return zlib.crc32("|".join(map(str, parts)).encode())


def _fit(root: Path, step: int, final: int, layer: str, dim: int, settings: CompressConfig,
         seed: int) -> dict[str, tuple]:
    """{direction: (mean, U)} of one layer at ``step``, from its fit tokens (float64)."""
    import torch

    from analysis import compression as C

    x = torch.from_numpy(np.asarray(repstore.load(root, step, layer)[0], dtype=np.float64))
    bases = {}
    for method in settings.directions:
        if method == "pca":
            bases[method] = C.pca_basis(x)
        elif method == "svcca":
            y = np.asarray(repstore.load(root, final, layer)[0], dtype=np.float64)
            bases[method] = C.svcca_basis(x, torch.from_numpy(y), settings.variance)
        else:  # the same random directions at every checkpoint of this layer
            bases[method] = (x.mean(0), C.random_basis(dim, stream_seed(seed, layer)))
    return bases


def compress_step(kind, spec: dict, model, task, data: Path, root: Path, step: int,
                  final: int, settings: CompressConfig, decoding: dict | None, seed: int
                  ) -> list[dict]:
    """One checkpoint's rows (the model holds its weights): every layer projected onto k of
    each direction's columns, k on analysis.compression.k_grid, then every pruning; with
    ``decoding``, the decoded measures too for the unchanged model, the width's projection
    and ``decode_methods``."""
    from analysis import compression as C
    from pipeline import pruning

    def measure(m, method: str | None = None) -> dict:
        decode = method is None or method in settings.decode_methods
        return kind.quality(m, task, spec, data, settings.device, settings.limit,
                            decoding if decode else None)

    reference = measure(model)
    higher = kind.quality_keys(spec)
    first = next(iter(higher))
    fit_tokens = repstore.tokens(root).side.value_counts()
    rows = []

    def add(q: dict, **where) -> None:
        rows.extend(dict(where, measure=name, primary=name == first, value=float(v),
                         reference=float(reference[name]), higher_better=higher[name])
                    for name, v in q.items())

    for layer, side, dim in kind.layers(spec):
        bases = _fit(root, step, final, layer, dim, settings, seed)
        where = dict(compress=C.PROJECTION, layer=layer, side=side, dim=dim, sparsity=np.nan,
                     fit_tokens=int(fit_tokens.get(side, 0)))
        for k in C.k_grid(dim, settings.k_base)[:-1]:
            for method, (mean, u) in bases.items():
                with kind.project(model, spec, layer, C.projector(mean, u, k)):
                    add(measure(model, method), method=method, k=k, **where)
        # at k = D every complete orthonormal basis projects onto the identity: measured once,
        # the row stands for each direction
        mean, u = next(iter(bases.values()))
        with kind.project(model, spec, layer, C.projector(mean, u, dim)):
            full = measure(model)
        for method in bases:
            add(full, method=method, k=dim, **where)
    where = dict(compress=C.PRUNING, layer="", side="", dim=np.nan, k=np.nan, fit_tokens=np.nan)
    for s in settings.sparsities:
        pruned = pruning.global_magnitude_masks(model, s)
        if "magnitude" in settings.pruning:
            add(measure(pruned, "magnitude"), method="magnitude", sparsity=s, **where)
        if "random" in settings.pruning:
            per_matrix, _ = pruning.sparsity_of(pruned)
            control = pruning.random_masks(model, per_matrix, stream_seed(seed, step, s))
            add(measure(control, "random"), method="random", sparsity=s, **where)
        del pruned
    return rows


def compress_model(name: str, spec: dict, model_dir: Path, extract_dir: Path, data: Path,
                   out: Path, settings: CompressConfig, seed: int) -> dict:
    """The chosen checkpoints of one model, each into out/steps/<step>.parquet as it
    finishes (a resumed run keeps those), then out/compression.parquet."""
    from tqdm import tqdm

    from analysis import compression as C

    start = time.perf_counter()
    kind = adapter(spec)
    if "random" in settings.pruning and "magnitude" not in settings.pruning:
        raise ValueError("compress.pruning: random pruning takes the magnitude masks' "
                         "sparsity per weight matrix; list magnitude too")
    probe = fit_probe(extract_dir, settings.fit_probes)
    root = Path(extract_dir) / probe
    stored = repstore.steps(root)
    final = int(checkpoints.verify(model_dir).step.iloc[-1])
    steps = chosen(stored, settings.checkpoints, final)
    decode = set(chosen(stored, settings.decode_at, final)) if settings.decode_at else set()
    folder = Path(out) / "steps"
    folder.mkdir(parents=True, exist_ok=True)
    model = task = None
    for step in tqdm(steps, desc=f"{name}/compress", unit="ckpt", leave=False):
        path = folder / f"step_{step:07d}.parquet"
        if path.is_file():
            continue
        checkpoint = checkpoints.checkpoint_path(model_dir, step)
        if model is None:
            model, task = kind.load(spec, checkpoint, data, settings.device)
        else:
            kind.load_weights(model, checkpoint, settings.device)
        decoding = dataclasses.asdict(settings.decoding) if step in decode else None
        rows = compress_step(kind, spec, model, task, data, root, step, stored[-1], settings,
                             decoding, seed)
        table = pd.DataFrame(rows).assign(
            model=name, role=C.REFERENCE if kind.reference else C.OVER_TRAINING, step=step,
            share=step / final, fit_probe=probe)
        store.write_with(path, lambda tmp, t=table[COLUMNS]: t.to_parquet(tmp, index=False))
    table = pd.concat([pd.read_parquet(folder / f"step_{s:07d}.parquet") for s in steps],
                      ignore_index=True)
    table.to_parquet(Path(out) / TABLE, index=False)
    summary = {"steps": steps, "fit_probe": probe, "evaluations": int(
        len(table.drop_duplicates(["step", "compress", "layer", "method", "k", "sparsity"]))),
        "seconds": round(time.perf_counter() - start, 1)}
    store.write_text(Path(out) / "compress.json", json.dumps(summary, indent=1))
    return summary


def validate_unit(unit: Path) -> None:
    """Raise store.Invalid when a compress unit's table is missing or unreadable."""
    try:
        pd.read_parquet(Path(unit) / TABLE, columns=["step"])
    except (OSError, ValueError) as err:
        raise store.Invalid(f"{Path(unit) / TABLE} unreadable ({err})") from None


def compresses(cfg: DictConfig | None, spec: dict) -> bool:
    """Whether a model has a unit: its kind has a quality measure."""
    return bool(adapter(spec).quality_keys(spec))


def cost(cfg: DictConfig, spec: dict, data: Path) -> float:
    """The model's compress work: parameters x evaluations per checkpoint x checkpoints (the
    extracted ones its training will write, nearest the configured shares)."""
    from analysis.compression import k_grid

    settings = typed(cfg.compress, CompressConfig)
    kind = adapter(spec)
    per_step = (sum(len(k_grid(d, settings.k_base)) - 1 for _, _, d in kind.layers(spec))
                * len(settings.directions) + len(kind.layers(spec))
                + len(settings.sparsities) * len(settings.pruning) + 1)
    steps = schedule(spec, typed(cfg.train, TrainConfig))
    read = extracted_checkpoints(spec, pd.DataFrame({"step": steps}),
                                 typed(cfg.extract, ExtractConfig)).step
    return float(kind.parameters(spec, data)) * per_step * len(
        chosen(list(read), settings.checkpoints, steps[-1]))


def unit(cfg: DictConfig, name: str, spec: dict, out: Path, inputs: dict) -> dict:
    """Unit function: ``compress_model`` in its own process, with the configured threads."""
    return jobs.call_in_process("pipeline.stages.compress:compress_model", name, spec,
                                inputs["train"], inputs["extract"], inputs["prepare"], out,
                                typed(cfg.compress, CompressConfig), int(cfg.seed),
                                threads=int(cfg.train.threads))


STAGE = Stage("compress", ("compress",), ("prepare", "train", "extract"),
              code=("pipeline.stages.compress",), unit=unit, resumable=True,
              check=validate_unit, applies=compresses, data="prepare", cost=cost)
