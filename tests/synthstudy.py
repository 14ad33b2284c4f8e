"""Synthetic representation stores with known learning dynamics, written with analysis.repstore.

A helper module, not a conftest.py: tests/pipeline import the top-level tests/conftest.py as
`conftest`, which a second conftest.py here would shadow. The shared results are cached
functions instead of session fixtures: computed once per test session, and shared between
pytest-xdist's processes through the folder tests/conftest.py names in SYNTHSTUDY_CACHE.

`build_study` writes an LM (embed, lstm_1, lstm_2), three taggers (embed, lstm_1) and a small
encoder-decoder (enc_embed, enc_1 on the source side, dec_embed, dec_1 on the target side) on
one probe. Each LM layer moves linearly from a random initial state R to its final state F and
arrives at a chosen step, so the order in which layers converge is known by construction;
the LM's recurrent layers move towards the taggers' recurrent layer and its embedding away
from the taggers' embedding (or the reverse); function-word gradients are one-hot-like and
content-word gradients dense (or the reverse).
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import configured
import numpy as np
import pandas as pd
from filelock import FileLock

from analysis import dynamics, repstore
from analysis.runs import ModelRun
from analysis.settings import AnalysisSettings

TAGS = ["NOUN", "VERB", "DET", "ADP", "ADJ", "PRON"]
TAG_P = [0.3, 0.2, 0.15, 0.15, 0.1, 0.1]
FUNCTION = {"DET", "ADP", "PRON"}
STEPS = [0, 1, 2, 4, 8, 16]
DIM = 8
REPO_CONF = Path(__file__).parents[1] / "conf"


def synth_tokens(n_sent: int = 40, length: int = 10, seed: int = 0) -> pd.DataFrame:
    """Token rows in the repstore schema: tags, target-aligned tags, genre, word frequency."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_sent):
        tags = rng.choice(TAGS, size=length, p=TAG_P)
        for i, tag in enumerate(tags):
            n_types = 5 if tag in FUNCTION else 40
            word = f"{tag.lower()}{rng.integers(n_types)}"
            # function words frequent, content words rarer, with an overlapping range
            wrng = np.random.default_rng(sum(map(ord, word)))
            freq = int(10 ** wrng.uniform(1.5, 3.5) if tag in FUNCTION
                       else 10 ** wrng.uniform(0.3, 2.8))
            rows.append(dict(probe="synth", side="lm", sent_id=f"s{s}", sent_index=s,
                             position=i, token=word, word_index=i, word=word,
                             first_subword=True, pos=tag, upos=tag, xpos=tag,
                             genre="news" if s % 2 == 0 else "fiction", doc_id=f"d{s // 4}",
                             train_freq=freq))
    t = pd.DataFrame(rows)
    nxt = t.groupby("sent_index").pos.shift(-1).fillna("</s>")
    return t.assign(pos_target=nxt, upos_target=nxt)


def _manifest(root: Path, sides: list[str], labels: dict[str, str]) -> None:
    """The probe manifest entry extraction copies next to the tokens."""
    (root / "probe.json").write_text(json.dumps({"sides": sides, "labels": labels}))


def _write(root: Path, tokens: pd.DataFrame, reps: dict[int, dict[str, np.ndarray]],
           grads: dict[int, dict[str, np.ndarray]] | None = None) -> None:
    layers = {name: {"side": "lm", "dim": a.shape[1]} for name, a in reps[STEPS[0]].items()}
    repstore.write_tokens(root, tokens, layers)
    _manifest(root, ["lm"], {"pos": "pos", "topic": "genre"})
    for step, arrays in reps.items():
        repstore.write_arrays(root, step, "act", arrays)
        if grads is not None:
            repstore.write_arrays(root, step, "grad", grads[step])
        (repstore.step_dir(root, step) / "done").write_text("synthetic")


def _checkpoints(steps=STEPS) -> pd.DataFrame:
    return pd.DataFrame(dict(step=steps, epoch=1, tokens_seen=[s * 100 for s in steps],
                             train_loss=np.nan, valid_loss=[10.0 / (1 + s) for s in steps]))


def _grads(tokens: pd.DataFrame, concentrated: set[str], rng) -> np.ndarray:
    """Dense Gaussian gradients, one-hot-like for tokens whose *predicted* tag is in
    ``concentrated``."""
    g = rng.standard_normal((len(tokens), DIM))
    spike = tokens.pos_target.isin(concentrated).to_numpy()
    hot = rng.integers(DIM, size=spike.sum())
    g[spike] *= 0.05
    g[np.flatnonzero(spike), hot] = 3.0
    return g


def build_study(root: Path, lower_first: bool = True, towards_tagger: bool = True,
                function_concentrated: bool = True, seed: int = 0) -> list[ModelRun]:
    """Write the synthetic LM and taggers under ``root``; return their ModelRuns."""
    rng = np.random.default_rng(seed)
    tokens = synth_tokens(seed=seed)
    n = len(tokens)
    layers = ["embed", "lstm_1", "lstm_2"]
    arrive = dict(zip(layers, [1, 4, 16] if lower_first else [16, 4, 1], strict=True))
    tagger_final = {layer: rng.standard_normal((n, DIM)) for layer in layers[:2]}
    final = {layer: rng.standard_normal((n, DIM)) for layer in layers}
    init = {layer: rng.standard_normal((n, DIM)) for layer in layers}
    # the LM starts at the taggers' embedding and its recurrent layers end near the taggers'
    # (top) recurrent state, or the reverse: embedding similarity to the taggers falls and
    # recurrent similarity rises (lstm_2 is compared with the taggers' top layer, lstm_1)
    near = {layer: tagger_final["lstm_1" if layer != "embed" else "embed"]
            + 0.3 * rng.standard_normal((n, DIM)) for layer in layers}
    for layer in layers:
        moves_in = (layer == "embed") != towards_tagger  # ends near the tagger's layer
        if moves_in:
            final[layer] = near[layer]
        else:
            init[layer] = near[layer]
    reps, grads = {}, {}
    content = {"NOUN", "VERB", "ADJ"}
    for step in STEPS:
        reps[step] = {layer: (min(1.0, step / arrive[layer]) * final[layer]
                              + (1 - min(1.0, step / arrive[layer])) * init[layer])
                      for layer in layers}
        spiky = FUNCTION if function_concentrated else content
        grads[step] = {layer: _grads(tokens, spiky, rng) for layer in layers}
    _write(root / "lm" / "synth", tokens, reps, grads)
    runs = [ModelRun("lm", "lstm_lm", seed, _checkpoints(),
                              {"synth": root / "lm" / "synth"}, family="lstm")]
    runs.append(_nmt(root, tokens, lower_first, rng, seed))
    for offset, fam in enumerate(("pos", "semtag", "topic"), start=101):
        noise = {layer: a + 0.2 * rng.standard_normal(a.shape)
                 for layer, a in tagger_final.items()}
        treps = {step: noise for step in STEPS}
        _write(root / f"tagger_{fam}" / "synth", tokens, treps)
        runs.append(ModelRun(f"tagger_{fam}", "lstm_tagger", seed, _checkpoints(),
                                      {"synth": root / f"tagger_{fam}" / "synth"}, tags=fam,
                                      reference=True, family="lstm", seed_offset=offset))
    return runs


def _nmt(root: Path, tokens: pd.DataFrame, lower_first: bool, rng, seed: int
         ) -> ModelRun:
    """A 2+2-layer "NMT" store: source and target sides hold the same synthetic sentences."""
    both = pd.concat([tokens.assign(side="source"), tokens.assign(side="target")],
                     ignore_index=True)
    n = len(tokens)
    layers = ["enc_embed", "enc_1", "dec_embed", "dec_1"]
    arrive = dict(zip(layers, [1, 8, 1, 8] if lower_first else [8, 1, 8, 1], strict=True))
    final = {layer: rng.standard_normal((n, DIM)) for layer in layers}
    init = {layer: rng.standard_normal((n, DIM)) for layer in layers}
    root = root / "nmt" / "synth"
    repstore.write_tokens(root, both, {layer: {"side": "source" if layer.startswith("enc")
                                               else "target", "dim": DIM} for layer in layers})
    _manifest(root, ["source", "target"], {"pos": "pos"})
    for step in STEPS:
        w = {layer: min(1.0, step / arrive[layer]) for layer in layers}
        repstore.write_arrays(root, step, "act", {
            layer: w[layer] * final[layer] + (1 - w[layer]) * init[layer] for layer in layers})
        repstore.write_arrays(root, step, "grad", {
            layer: rng.standard_normal((n, DIM)) for layer in layers})
        (repstore.step_dir(root, step) / "done").write_text("synthetic")
    return ModelRun("nmt", "transformer_nmt", seed, _checkpoints(), {"synth": root},
                             family="transformer")


# The translate unit's stage curves per STEPS index. C5 (Voita et al.'s reading): BLEU reaches
# 10 at step 1; in order, the LM score peaks at 1, token accuracy makes 90% of its change at 4
# and the fuzzy reordering score at 16; reversed, the fuzzy score at 2, token accuracy at 16
# and the LM peak at 16.
SYNTH_C5 = {True: dict(lm_at=1, accuracy=[0.0, 0.1, 0.5, 0.9, 0.9, 0.9],
                       fuzzy=[0.95, 0.95, 0.9, 0.85, 0.8, 0.7]),
            False: dict(lm_at=16, accuracy=[0.0, 0.1, 0.1, 0.1, 0.2, 0.9],
                        fuzzy=[0.95, 0.95, 0.7, 0.7, 0.7, 0.7])}


def synth_translation(in_order: bool = True, n_sent: int = 30, seed: int = 0
                      ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A translate unit's tables (sentences, checkpoints, reference, tokens) over STEPS, built
    so that C5 holds (``in_order``, see SYNTH_C5) or is reversed, and so that in its KL reading
    the KL to every n-gram LM (orders 1-3) is smallest at step 2 (in order) or 16; the earlier
    reading's lexical accuracy settles from step 4 and reordering from step 8 (in order), or
    reordering first, then lexical accuracy."""
    rng = np.random.default_rng(seed)
    kl_at, lex_at, reord_at = (2, 4, 8) if in_order else (16, 4, 1)
    c5 = SYNTH_C5[in_order]
    rows, tokens = [], []
    for k, step in enumerate(STEPS):
        lm = -3.0 - abs(np.log2(1 + step) - np.log2(1 + c5["lm_at"]))
        for i in range(n_sent):
            positions = 10
            kl = 1.0 + abs(np.log2(1 + step) - np.log2(1 + kl_at)) + 0.05 * rng.random()
            lexical = min(1.0, (1 + step) / (1 + lex_at))
            reorder = min(1.0, (1 + step) / (1 + reord_at))
            rows.append(dict(set="test2016", step=step, sentence=i, positions=positions,
                             kl_sum_1=positions * (kl + 0.5), kl_sum_2=positions * (kl + 0.2),
                             kl_sum_3=positions * kl,
                             outside_sum=0.0, lexical_hits=int(round(10 * lexical)),
                             lexical_total=10, tau=1 - 2 * 0.4 * reorder
                             + 0.02 * rng.standard_normal(), fuzzy=c5["fuzzy"][k], links=5,
                             lm_logprob_1=positions * (lm - 1), lm_logprob_2=positions * lm,
                             lm_logprob_3=positions * (lm + 0.1), lm_pieces=positions,
                             lm_outside=0, output_words=8, aligner="eflomal"))
            hits = int(round(positions * c5["accuracy"][k]))
            tokens.append(pd.DataFrame(dict(set="test2016", step=step, sentence=i,
                                            position=range(positions),
                                            hit=np.arange(positions) < hits,
                                            train_rank=np.arange(positions) * 50.0 + 1)))
    sentences = pd.DataFrame(rows)
    ckpts = pd.DataFrame(dict(set="test2016", step=STEPS,
                              bleu=[12.0 * np.log2(1 + s) for s in STEPS], sentences=n_sent))
    reference = pd.DataFrame(dict(set="test2016", sentence=range(n_sent), tau=0.3, fuzzy=0.75,
                                  links=5, lm_logprob_1=-50.0, lm_logprob_2=-40.0,
                                  lm_logprob_3=-38.0, lm_pieces=10, lm_outside=0,
                                  aligner="eflomal"))
    return sentences, ckpts, reference, pd.concat(tokens, ignore_index=True)


def translation_tables(in_order: bool = True, seed: int = 1) -> dict[str, pd.DataFrame]:
    """The analyze stage's NMT-stage tables of :func:`synth_translation` (model "nmt", its one
    set named test2016, whose BLEU starts C5's reading)."""
    from analysis import nmt_stages

    sentences, ckpts, reference, tokens = synth_translation(in_order)
    curves = nmt_stages.unit_curves(sentences, ckpts, reference, tokens=tokens, edges=[10, 100])
    return {"nmt_stages": curves.assign(model="nmt", seed=seed)}


# The compress unit of the LM over STEPS[2:] (share = step / 16), three layers of DIM = 8: its
# relative change of valid perplexity at k = 1, 2, 4, 8 per direction, and at sparsities 0.1 to
# 0.9 per pruning. In order (C6-C6c hold): at the end SVCCA keeps the quality on 1 direction,
# random on 8; PCA's k* falls from 4 (every earlier step) to 1 at the end; magnitude's s* rises
# from 0.1 to 0.5 (random pruning: none within). Reversed: SVCCA needs all 8 (as random), PCA's
# k* rises from 1 to 4 at the end, s* falls.
def _changes(k_star: int) -> list[float]:
    return [0.0 if k >= k_star else 1.0 for k in (1, 2, 4, 8)]


def synth_compression(in_order: bool = True) -> pd.DataFrame:
    """A compress unit's rows (pipeline.stages.compress.COLUMNS) built as described above."""
    rows = []
    steps = STEPS[2:]
    for i, step in enumerate(steps):
        last = step == steps[-1]
        k_stars = {"pca": 1 if in_order == last else 4, "svcca": 1 if in_order and last else 8,
                   "random": 8}
        s_star = 0.1 + (0.4 * i / (len(steps) - 1) if in_order else 0.4 * (1 - i / 3))
        common = dict(model="lm", role="over training", step=step, share=step / steps[-1],
                      measure="valid_ppl", primary=True, reference=100.0, higher_better=False,
                      fit_probe="synth")
        for layer in ("embed", "lstm_1", "lstm_2"):
            for method, k_star in k_stars.items():
                for k, change in zip((1, 2, 4, 8), _changes(k_star), strict=True):
                    rows.append(dict(common, compress="projection", layer=layer, side="lm",
                                     dim=DIM, method=method, k=k, sparsity=np.nan,
                                     value=100.0 * (1 + change), fit_tokens=400))
        for method in ("magnitude", "random"):
            for sparsity in np.round(np.arange(0.1, 1.0, 0.1), 1):
                within = method == "magnitude" and sparsity <= s_star + 1e-9
                rows.append(dict(common, compress="pruning", layer="", side="", dim=np.nan,
                                 method=method, k=np.nan, sparsity=sparsity,
                                 value=100.0 * (1.0 if within else 2.0), fit_tokens=np.nan))
    return pd.DataFrame(rows)


def compression_tables(in_order: bool = True, seed: int = 1) -> dict[str, pd.DataFrame]:
    """The analyze stage's compression tables of :func:`synth_compression`."""
    from analysis.tables.compression import compression_tables as tables

    root = _scratch("compress")
    synth_compression(in_order).to_parquet(root / "compression.parquet")
    return tables({"lm": root}, seed, small_settings())


# The stability and tickets units of the LM: rewind points STEPS[:4]; on the line between the
# LM's and each child's last weights the loss is 5 + 5·b·4α(1 - α), so the relative barrier is
# b. In order: b falls from 0.015 to 0.002, under the 0.02 threshold everywhere (stable from
# step 0: C7 holds, and every layer, converging from step 1 on, does so after it: C9 holds);
# IMP rewound to step 0 stays within 0 of the dense loss to round 4 (59% sparse) while the
# random (0.2) and re-initialised (0.1) controls do not (C8 holds). Reversed: b from 0.1 to
# 0.05 (never stable), the ticket 0.2 worse than the dense model.
REWIND = STEPS[:4]
THRESHOLD = 0.02


def synth_stability(in_order: bool = True) -> pd.DataFrame:
    """A stability unit's rows (pipeline.stages.stability.COLUMNS) as described above."""
    barriers = np.linspace(0.015, 0.002, len(REWIND)) if in_order else np.linspace(
        0.1, 0.05, len(REWIND))
    return pd.DataFrame([
        dict(model="lm", step=k, share=k / STEPS[-1], child=f"children/step_{k:07d}",
             data_seed=1, child_data_seed=1001, alpha=a, measure="valid_loss",
             higher_better=False, value=5.0 + 5.0 * b * 4 * a * (1 - a))
        for k, b in zip(REWIND, barriers, strict=True) for a in np.linspace(0, 1, 11)])


def synth_tickets(in_order: bool = True) -> pd.DataFrame:
    """A tickets unit's rows (pipeline.stages.tickets.COLUMNS) as described above."""
    common = dict(model="lm", rewind="late", rewind_step=0, rewind_share=0.0, stable=in_order,
                  measure="valid_loss", higher_better=False, dense=5.0)
    rows = [dict(common, method="dense", rewind="", rewind_step=-1, round=0, sparsity=0.0,
                 value=5.0, dir="")]
    for r in range(1, 7):
        change = (0.0 if r <= 4 else 0.05) if in_order else 0.2
        rows.append(dict(common, method="imp", round=r, sparsity=1 - 0.8 ** r,
                         value=5.0 * (1 + change), dir=f"imp_late/round_{r:02d}"))
    for method, change in (("random", 0.2), ("reinit", 0.1)):
        rows.append(dict(common, method=method, round=4, sparsity=1 - 0.8 ** 4,
                         value=5.0 * (1 + change), dir=f"{method}_late/round_04"))
    return pd.DataFrame(rows)


def write_stability_units(root: Path, extract: Path, train: Path, in_order: bool = True
                          ) -> tuple[Path, Path]:
    """The LM's stability unit (each child's extraction the LM's own stores, linked) and
    tickets unit under ``root``; returns (stability unit, tickets unit)."""
    stability, tickets = root / "stability" / "lm", root / "tickets" / "lm"
    rows = synth_stability(in_order)
    for child in sorted(set(rows.child)):
        where = stability / child
        (where / "extract").mkdir(parents=True)
        shutil.copy(train / "checkpoints.csv", where / "checkpoints.csv")
        for item in extract.iterdir():
            (where / "extract" / item.name).symlink_to(item.resolve())
    rows.to_parquet(stability / "stability.parquet")
    pd.DataFrame({"model": "lm", "step": REWIND, "child": sorted(set(rows.child))}).to_csv(
        stability / "children.csv", index=False)
    tickets.mkdir(parents=True)
    synth_tickets(in_order).to_parquet(tickets / "tickets.parquet")
    return stability, tickets


def stability_tables(runs: list[ModelRun], in_order: bool = True) -> dict[str, pd.DataFrame]:
    """The analyze stage's stability and tickets tables of the synthetic units (the runs'
    seed)."""
    from analysis.tables.stability import stability_tables as tables

    seed = runs[0].seed
    root = _scratch("stability")
    extract, train = write_units(runs, root, seed)
    stability, tickets = write_stability_units(root, extract["lm"], train["lm"], in_order)
    return tables({"lm": stability}, {"lm": tickets}, train, extract, seed, small_settings(),
                  THRESHOLD)


def write_units(runs: list[ModelRun], root: Path, seed: int = 1
                ) -> tuple[dict[str, Path], dict[str, Path]]:
    """The study's models laid out like the pipeline's per-model units: extract units with
    model.json and the stores (linked), train units with checkpoints.csv and eval.json.
    Returns (extract units, train units), model -> directory."""
    extract, train = {}, {}
    for run in runs:
        e, t = root / "extract" / run.name / f"e{seed}", root / "train" / run.name / f"t{seed}"
        e.mkdir(parents=True)
        t.mkdir(parents=True)
        for probe, store in run.stores.items():
            (e / probe).symlink_to(store)
        (e / "model.json").write_text(json.dumps(
            {"name": run.name, "kind": run.kind, "family": run.family,
             "reference": run.reference, "tags": run.tags, "seed_offset": run.seed_offset}))
        run.checkpoints.assign(valid_ppl=2 ** run.checkpoints.valid_loss).to_csv(
            t / "checkpoints.csv", index=False)
        (t / "eval.json").write_text(json.dumps({"test_ppl": 10.0 + seed}))
        extract[run.name], train[run.name] = e, t
    return extract, train


def small_settings(**kw) -> AnalysisSettings:
    """conf/analysis's settings sized for the synthetic study (a few seconds per analysis)."""
    s = configured.analysis()
    s = dataclasses.replace(
        s, max_tokens=1000, baseline_shuffles=1, seed=3,
        per_tag=dataclasses.replace(s.per_tag, min_n=30, max_n=60, min_tags=4, freq_bins=2),
        concentration=dataclasses.replace(s.concentration, n_boot=50),
        sanity=dataclasses.replace(s.sanity, dims=DIM, token_counts=[40, 100, 400]))
    return dataclasses.replace(s, **kw)


def _scratch(name: str) -> Path:
    """A temporary folder removed when the test process ends."""
    root = Path(tempfile.mkdtemp(prefix=f"synthstudy_{name}_"))
    atexit.register(shutil.rmtree, root, True)
    return root


def shared(fn):
    """Cache ``fn()`` in this process and, when SYNTHSTUDY_CACHE names a folder, on disk for
    the other test processes (the first to ask computes it under a lock)."""
    @functools.cache
    def cached():
        folder = os.environ.get("SYNTHSTUDY_CACHE")
        if not folder:
            return fn()
        path = Path(folder) / f"{fn.__name__}.pickle"
        with FileLock(f"{path}.lock"):
            if path.is_file():
                return pickle.loads(path.read_bytes())
            value = fn()
            path.write_bytes(pickle.dumps(value))
            return value

    return functools.wraps(fn)(cached)


@shared
def study_tables() -> dict[str, pd.DataFrame]:
    """Tables of the study built so that C1, C3, C4 and C5 should hold (computed once per
    run; do not modify)."""
    from analysis import claims

    runs = build_study(_scratch("pass"))
    tables = dynamics.analyze(runs, small_settings(), progress=False)
    tables = {**tables, **translation_tables(in_order=True), **compression_tables(in_order=True),
              **stability_tables(runs, in_order=True)}
    return {**tables, "commit": claims.commit_events(tables, small_settings().claims)}


@shared
def stage_runs() -> dict:
    """The analyze stage on two seeds of the whole study (each seed's extract and train units,
    and a translate unit of the NMT model; seed 1 analysed in two processes) and the aggregate
    stage on both: {"analyze": {seed: (summary, out dir)}, "aggregate": (summary, out dir)}.
    Once per test session: its folders are in the folder the processes share."""
    from omegaconf import OmegaConf

    from pipeline.stages.aggregate import run_aggregate
    from pipeline.stages.analyze import run_analyze

    folder = os.environ.get("SYNTHSTUDY_CACHE")
    root = Path(folder) / "stage_runs" if folder else _scratch("stages")
    analysis = OmegaConf.load(REPO_CONF / "analysis" / "default.yaml")
    analysis.max_tokens = 5000  # interpolated from extract in the full config
    analysis.per_tag.update(min_n=30, max_n=60)
    analysis.sanity.update(dims=8, token_counts=[40, 100])
    analysis.concentration.n_boot = 20
    analysis.claims.n_permutations, analysis.rsa_max_rows = 10, 300  # small and quick
    plot = OmegaConf.load(REPO_CONF / "plot" / "default.yaml")
    plot.update(dpi=40, formats=["png"], workers=1)
    runs = build_study(root / "stores")
    translate = root / "translate" / "nmt"
    translate.mkdir(parents=True)
    for name, table in zip(("sentences", "checkpoints", "reference", "tokens"),
                           synth_translation(), strict=True):
        table.to_parquet(translate / f"{name}.parquet")
    compress = root / "compress" / "lm"
    compress.mkdir(parents=True)
    synth_compression().to_parquet(compress / "compression.parquet")
    analyzed, seeds = {}, {}
    for seed, parallel in ((1, 2), (2, 1)):
        extract, train = write_units(runs, root / f"seed{seed}", seed)
        stability, tickets = write_stability_units(root / f"seed{seed}", extract["lm"],
                                                   train["lm"])
        out = root / f"analyze{seed}"
        cfg = OmegaConf.create({"analysis": analysis, "seed": seed,
                                "stability": {"threshold": THRESHOLD},
                                "train": {"parallel": parallel, "device": "cpu"}})
        units = {"extract": extract, "train": train, "translate": {"nmt": translate},
                 "compress": {"lm": compress}, "stability": {"lm": stability},
                 "tickets": {"lm": tickets}}
        analyzed[seed] = run_analyze(cfg, out, units), out
        seeds[seed] = {"extract": extract, "train": train, "analyze": out}
    cfg = OmegaConf.create({"name": "synthetic", "analysis": analysis, "plot": plot,
                            "aggregate": {"seeds": [1, 2], "ci": 0.95},
                            "train": {"device": "cpu"}})
    out = root / "aggregate"
    return {"analyze": analyzed, "aggregate": (run_aggregate(cfg, out, {"seeds": seeds}), out)}


@shared
def reversed_tables() -> dict[str, pd.DataFrame]:
    """Tables of the study built so that C1, C3, C4 and C5 should fail (computed once per
    run)."""
    runs = build_study(_scratch("fail"), lower_first=False, towards_tagger=False,
                       function_concentrated=False)
    from analysis import claims

    tables = dynamics.analyze(runs, small_settings(), progress=False)
    tables = {**tables, **translation_tables(in_order=False),
              **compression_tables(in_order=False), **stability_tables(runs, in_order=False)}
    return {**tables, "commit": claims.commit_events(tables, small_settings().claims)}


@shared
def study_claims() -> pd.DataFrame:
    """The claims on :func:`study_tables` with the default claim settings (do not modify)."""
    from analysis import claims

    return claims.evaluate(study_tables(), small_settings().claims)


@shared
def reversed_claims() -> pd.DataFrame:
    """The claims on :func:`reversed_tables` with the default claim settings."""
    from analysis import claims

    return claims.evaluate(reversed_tables(), small_settings().claims)


@functools.cache
def plotted() -> tuple[Path, dict, dict[str, pd.DataFrame]]:
    """The study's tables written like the analyze stage (with claims), read back by the plot
    stage, and drawn: (output dir, run_plot summary, tables as written)."""
    from omegaconf import OmegaConf

    from analysis import claims
    from pipeline.stages.plot import run_plot
    from pipeline.tables import write_tables

    root = _scratch("plotted")
    tables = dict(study_tables())
    tables["claims"] = study_claims()
    tables["answer"] = claims.answer(tables["claims"], small_settings().claims)
    tables["claims_summary"] = claims.summarize(tables["claims"])
    write_tables(root / "analyze" / "tables", tables)
    plot_cfg = OmegaConf.load(REPO_CONF / "plot" / "default.yaml")
    plot_cfg.dpi = 40
    plot_cfg.formats = ["png"]  # pdf: test_figures.test_every_configured_format_is_written
    cfg = OmegaConf.create({"name": "synthetic", "plot": plot_cfg})
    summary = run_plot(cfg, root / "plot", {"analyze": root / "analyze"})
    return root / "plot", summary, tables
