"""The translate stage, per translation model: at every checkpoint, on each configured set of
sentence pairs, the measures of NMT's training stages (analysis.nmt_stages) per sentence: the
score of its greedy translations under target-side n-gram LMs, its teacher-forced token
accuracy (per reference piece, with the piece's training-frequency rank), the fuzzy reordering
score and Kendall's tau of the source-translation word alignment, the teacher-forced KL to the
n-gram LMs (Chang & Bergen's reading), and BLEU per checkpoint.

The n-gram LMs are fitted on the German side of the NMT's training pieces, the aligner
(analysis.word_alignment: eflomal, or IBM Model 1 when eflomal is not installed) on its
training words; both once per unit. Writes sentences.parquet, tokens.parquet,
checkpoints.parquet, reference.parquet (the references' own LM scores and reordering) and the
translations (translations/<set>/<step>.txt).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from analysis.fields import setting
from pipeline import checkpoints, jobs, store
from pipeline.config import typed
from pipeline.models import adapter
from pipeline.stages.stage import Stage
from pipeline.stages.train import TrainConfig, schedule

log = logging.getLogger(__name__)
TABLES = ("sentences", "tokens", "checkpoints", "reference")


@dataclass
class NgramConfig:
    orders: list[int] = setting(ge=1, help="one target-side n-gram LM per order")
    smoothing: str = setting(choices=("witten_bell", "laplace"))


@dataclass
class AlignmentConfig:
    aligner: str = setting(choices=("eflomal", "ibm1"), help="the source-translation word "
                           "aligner (eflomal falls back to ibm1 when not installed)")
    samplers: int = setting(ge=1, help="eflomal's independent samplers")
    ibm1_iterations: int = setting(ge=1, help="IBM Model 1 EM iterations (the fallback)")
    max_pairs: int | None = setting(ge=1, help="fit on the first N training pairs (null: all)")


@dataclass
class TranslateConfig:
    """conf/translate: the sets, decoding and reference models of the measures (the schema's
    ``translate`` group)."""

    sets: list[str] = setting(choices=("test2016", "pud"))
    max_sentences: int | None = setting(ge=1, help="the first N sentences of each set")
    beam: int = setting(ge=1, help="1: greedy decoding")
    max_len_a: float = setting(ge=0)
    max_len_b: int = setting(ge=1)
    batch_size: int = setting(ge=1)
    ngram: NgramConfig = setting()
    alignment: AlignmentConfig = setting()
    device: str = setting(choices=("cpu", "cuda"))


def translates(cfg: DictConfig | None, spec: dict) -> bool:
    """Whether a model translates (reads source and target sides): only those have a unit."""
    return tuple(adapter(spec).sides_of(spec)) == ("source", "target")


def _reordering(aligner, sources: list[list[str]], outputs: list[list[str]]) -> list[dict]:
    """Per pair: the fuzzy reordering score and Kendall's tau of its word alignment."""
    from analysis import nmt_stages as ns
    from analysis import word_alignment as wa

    return [{"fuzzy": ns.fuzzy_reordering_score(links), "tau": ns.kendall_tau(links),
             "links": len(links), "aligner": aligner.name}
            for links in wa.align(aligner, list(zip(sources, outputs, strict=True)))]


def _lm_scores(targets: dict, pieces: list[str], index: dict, support) -> dict:
    """A piece sequence's log-probability under each n-gram LM, and the pieces scored."""
    from analysis import nmt_stages as ns

    row = {}
    for k, t in targets.items():
        total, scored, outside = ns.sequence_logprob(t, pieces, index, support)
        row[f"lm_logprob_{k}"] = total
    row["lm_pieces"], row["lm_outside"] = scored, outside
    return row


def translate_model(name: str, spec: dict, model_dir: Path, data: Path, out: Path,
                    settings: TranslateConfig) -> dict:
    """Every checkpoint of one translation model on each set: per-sentence rows of the
    measures, per-piece rows of teacher-forced accuracy, BLEU per checkpoint, the
    translations."""
    import numpy as np
    from tqdm import tqdm

    from analysis import nmt_stages as ns
    from analysis import word_alignment as wa
    from pipeline import translation

    start = time.perf_counter()
    kind = adapter(spec)
    table = checkpoints.verify(model_dir)
    pairs = [translation.load_pairs(data, s, settings.max_sentences) for s in settings.sets]
    text = Path(data) / "nmt" / "text"
    german = [line.split() for line in translation.lines(text / "train.de")]
    orders = sorted(set(settings.ngram.orders))
    lms = {k: ns.fit_ngram_lm(german, k, settings.ngram.smoothing) for k in orders}
    ranks = ns.frequency_ranks(Counter(p for s in german for p in s))
    bitext = list(zip(map(ns.words, translation.lines(text / "raw.train.en")),
                      map(ns.words, translation.lines(text / "raw.train.de")), strict=True))
    bitext = bitext[: settings.alignment.max_pairs]
    fitted = time.perf_counter()
    aligner = wa.fit_aligner(bitext, settings.alignment.aligner, settings.alignment.samplers,
                             settings.alignment.ibm1_iterations)
    if aligner.name != settings.alignment.aligner:
        log.warning("%s: eflomal is not installed; the reordering scores use IBM Model 1 "
                    "(no distortion model)", name)
    aligned = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)

    model, task = kind.load(spec, checkpoints.checkpoint_path(model_dir, int(table.step.iloc[0])),
                            data, settings.device)
    dictionary = task.target_dictionary
    vocab = [dictionary[i] for i in range(len(dictionary))]
    index = {w: i for i, w in enumerate(vocab)}
    targets = {k: ns.TargetLM.over(lm, vocab) for k, lm in lms.items()}
    # the pieces every LM knows: the lowest order's (a unigram LM has no </s>, so the end of a
    # sentence is in neither the KL nor the LM score)
    unk = lms[orders[0]].vocab.unk_label
    support = np.array([w != "<s>" and lms[orders[0]].vocab.lookup(w) != unk for w in vocab])

    sources = {p.name: [ns.words(t) for t in p.source_text] for p in pairs}
    reference = []
    for p in pairs:
        refs = _reordering(aligner, sources[p.name], [ns.words(t) for t in p.target_text])
        reference += [dict(set=p.name, sentence=i, **_lm_scores(targets, t, index, support),
                           **r) for i, (t, r) in enumerate(zip(p.target, refs, strict=True))]
    # each reference position's n-gram context; its distributions are recomputed at every
    # checkpoint (cached, they would take ~0.8 GB at 150 + 150 sentences, three orders)
    contexts = {p.name: [[("<s>",) * (max(orders) - 1) + tuple(t[:j]) for j in range(len(t) + 1)]
                         for t in p.target] for p in pairs}
    piece_ranks = {p.name: [np.array([ranks.get(w, np.nan) for w in t], dtype=float)
                            for t in p.target] for p in pairs}

    rows, tokens, per_checkpoint = [], [], []
    for step in tqdm(list(table.step), desc=f"{name}/translate", unit="ckpt", leave=False):
        kind.load_weights(model, checkpoints.checkpoint_path(model_dir, int(step)),
                          settings.device)
        for p in pairs:
            lprobs = translation.teacher_forced(model, dictionary, p, settings.batch_size)
            hyps = translation.translate(model, dictionary, p, settings.beam,
                                         settings.max_len_a, settings.max_len_b,
                                         settings.batch_size)
            texts = [translation.detokenize(h) for h in hyps]
            outputs = [ns.words(t) for t in texts]
            order = _reordering(aligner, sources[p.name], outputs)
            for i, (lp, hyp) in enumerate(zip(lprobs, hyps, strict=True)):
                row = dict(set=p.name, step=int(step), sentence=i, positions=len(lp))
                for k, t in targets.items():
                    q = np.stack([ns.next_token_probs(t, c) for c in contexts[p.name][i]])
                    kl, outside = ns.kl_on_support(lp, q, support)
                    row[f"kl_sum_{k}"] = float(kl.sum())
                row["outside_sum"] = float(outside.sum())
                row.update(_lm_scores(targets, hyp, index, support))
                row.update(order[i], output_words=len(outputs[i]))
                rows.append(row)
                hits = ns.teacher_forced_hits(lp, [dictionary.index(w) for w in p.target[i]])
                tokens.append(pd.DataFrame(dict(
                    set=p.name, step=int(step), sentence=i, position=np.arange(len(hits)),
                    hit=hits, train_rank=piece_ranks[p.name][i])))
            bleu = translation.bleu(texts, p)
            per_checkpoint.append(dict(set=p.name, step=int(step), bleu=bleu,
                                       sentences=len(texts)))
            folder = out / "translations" / p.name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{int(step)}.txt").write_text("".join(t + "\n" for t in texts),
                                                      encoding="utf-8")
    pd.DataFrame(rows).to_parquet(out / "sentences.parquet")
    pd.concat(tokens, ignore_index=True).to_parquet(out / "tokens.parquet")
    pd.DataFrame(per_checkpoint).to_parquet(out / "checkpoints.parquet")
    pd.DataFrame(reference).to_parquet(out / "reference.parquet")
    seconds = {"fit_ngram": round(fitted - start, 1), "fit_aligner": round(aligned - fitted, 1),
               "per_checkpoint": round((time.perf_counter() - aligned) / len(table), 1)}
    (out / "translate.json").write_text(json.dumps(
        {"sets": {p.name: len(p.source) for p in pairs}, "checkpoints": len(table),
         "aligner": aligner.name, "smoothing": settings.ngram.smoothing,
         "orders": orders, "seconds": seconds}, indent=1))
    return {"checkpoints": len(table), "aligner": aligner.name, "seconds": seconds}


def validate_unit(unit: Path) -> None:
    """Raise store.Invalid when a translate unit's tables are missing or unreadable."""
    for name in TABLES:
        try:
            pd.read_parquet(Path(unit) / f"{name}.parquet", columns=["set"])
        except (OSError, ValueError) as err:
            raise store.Invalid(f"{Path(unit) / name}.parquet unreadable ({err})") from None


def cost(cfg: DictConfig, spec: dict, data: Path) -> float:
    """The model's translate work: parameters x sentences x checkpoints (the reference models
    fitted once per unit are in the seconds per unit its kind is calibrated to)."""
    translate = typed(cfg.translate, TranslateConfig)
    sentences = len(translate.sets) * (translate.max_sentences or 1000)
    return (float(adapter(spec).parameters(spec, data)) * sentences
            * len(schedule(spec, typed(cfg.train, TrainConfig))))


def unit(cfg: DictConfig, name: str, spec: dict, out: Path, inputs: dict) -> dict:
    """Unit function: ``translate_model`` in its own process, with the configured threads."""
    return jobs.call_in_process("pipeline.stages.translate:translate_model", name, spec,
                                inputs["train"], inputs["prepare"], out,
                                typed(cfg.translate, TranslateConfig),
                                threads=int(cfg.train.threads))


STAGE = Stage("translate", ("translate",), ("prepare", "train"),
              code=("pipeline.stages.translate",), unit=unit, check=validate_unit,
              applies=translates, data="prepare", cost=cost)
