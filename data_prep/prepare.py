"""The prepare stage: corpora -> one tagged-sentence table, splits, vocabularies, fairseq bins,
and token-level probe tables with word/subword alignment. No Hydra here: it takes the data
group's settings as plain dataclasses (data_prep.settings)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from data_prep import binarize, bpe, readers, splits, stats, vocab
from data_prep.align import aligned_tags, encode_words
from data_prep.errors import DataError
from data_prep.settings import DataConfig, UserProbe
from data_prep.sources import fetch
from data_prep.tagsets import read_tag_map

log = logging.getLogger(__name__)

BROWN = "nltk_data/corpora/brown.zip"
BROWN_MAP = "nltk_data/taggers/universal_tagset/en-brown.map"
EWT_TEST = "ud/UD_English-EWT/en_ewt-ud-test.conllu.gz"
PUD_EN = "ud/UD_English-PUD/en_pud-ud-test.conllu.gz"
PUD_DE = "ud/UD_German-PUD/de_pud-ud-test.conllu.gz"
PMB = "pmb-semtags/4.0.0/en/gold/{split}.conll.gz"
M30K = "multi30k/raw/{name}.{lang}.gz"
LM_SPLITS = ("train", "valid", "test")
# tag set of a tagger (its `tags`) -> the probe column holding that label of the token read
LABEL_COLUMNS = {"pos": "pos", "topic": "genre", "semtag": "semtag"}
SIDE_ORDER = ("lm", "source", "target")


def read_corpora(cfg: DataConfig, get: Callable[[str], Path]) -> pd.DataFrame:
    """Every tagged corpus as rows of the sentence table, with its split."""
    brown_zip = get(BROWN)
    cats = readers.brown_reader(brown_zip)
    doc_genre = {f: cats.categories(f)[0] for f in cats.fileids()}
    docs = splits.subsample_documents(doc_genre, cfg.brown.max_docs_per_genre)
    split_of = splits.split_documents({d: doc_genre[d] for d in docs},
                                      dict(cfg.brown.fractions), cfg.brown.split_seed)
    map_path = get(BROWN_MAP)
    rows = []
    for row in readers.read_brown(brown_zip, read_tag_map(map_path), str(map_path), docs):
        row["split"] = split_of[row["doc_id"]]
        rows.append(row)
    cap = cfg.ewt.max_sentences
    rows += list(readers.read_conllu(get(EWT_TEST), "ewt", "test"))[:cap]
    cap = cfg.pud.max_sentences
    pud_en = list(readers.read_conllu(get(PUD_EN), "pud_en", "probe"))[:cap]
    pud_de = list(readers.read_conllu(get(PUD_DE), "pud_de", "probe"))[:cap]
    if [r["sent_id"] for r in pud_en] != [r["sent_id"] for r in pud_de]:
        raise ValueError(f"{PUD_EN} and {PUD_DE} do not have the same sentence ids in order")
    rows += pud_en + pud_de
    cap = cfg.pmb.max_sentences
    for split, name in (("train", "train"), ("valid", "dev"), ("test", "test")):
        rows += list(readers.read_pmb(get(PMB.format(split=name)), split))[:cap]
    for name, probe in user_probes(cfg).items():
        rows += read_user_probe(name, probe)
    return pd.DataFrame(rows)


USER = "user:"  # the corpus name of a user's probe
BUILT_IN_PROBES = ("brown_probe", "ewt_test", "pud")


def user_probes(cfg: DataConfig) -> dict[str, UserProbe]:
    """The user's CoNLL-U probe corpora (``data.probes``), checked to exist under free names."""
    for name, probe in cfg.probes.items():
        if name in BUILT_IN_PROBES:
            raise DataError(probe.conllu, f"data.probes.{name}: the name of a built-in probe; "
                            "choose another")
        if not Path(probe.conllu).is_file():
            raise DataError(probe.conllu, f"data.probes.{name}.conllu: no such file")
    return dict(cfg.probes)


def read_user_probe(name: str, probe: UserProbe) -> list[dict]:
    """The sentences of a user's CoNLL-U probe (its first ``max_sentences``); an error in it,
    or a file without sentences, names its key as well as its file (and line)."""
    key = f"data.probes.{name}"
    try:
        found = list(readers.read_conllu(Path(probe.conllu), USER + name, "probe"))
    except DataError as e:
        raise DataError(e.path, f"{key}: {e.message}", e.line) from None
    if not found:
        raise DataError(probe.conllu, f"{key}: no sentences in it (an empty file?); a probe "
                        "corpus is CoNLL-U with UD's tags")
    return found[: probe.max_sentences]


def _write_lines(path: Path, lines) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
    return path


def _tag_dict(tables: list[pd.Series], path: Path) -> Path:
    counts = vocab.count_words(tables_iter(tables))
    vocab.write_fairseq_dict(vocab.top_k(counts, len(counts)), path)
    return path


def tables_iter(series_list: list[pd.Series]):
    for s in series_list:
        yield from s


def build_lm_data(table: pd.DataFrame, cfg: DataConfig, out: Path, workers: int) -> Counter:
    """Word-level LM (Brown) plus parallel tag streams for the POS and topic taggers, and PMB
    words with semantic tags, all binarised with the LM dictionary so taggers share its input."""
    text, bins = out / "text", out / "bin"
    text.mkdir()
    brown = table[table.corpus == "brown"]
    lower = brown.words.map(lambda ws: [w.lower() for w in ws])
    counts = vocab.count_words(lower[brown.split == "train"])
    lm_dict = out / "dict.lm.txt"
    vocab.write_fairseq_dict(vocab.top_k(counts, cfg.lm.vocab_size), lm_dict)

    streams: dict[str, dict[str, Path]] = {"lm": {}, "pos": {}, "topic": {}}
    for split in LM_SPLITS:
        part = brown[brown.split == split]
        streams["lm"][split] = _write_lines(text / f"{split}.lm", (" ".join(w) for w in
                                                                   lower[part.index]))
        streams["pos"][split] = _write_lines(text / f"{split}.pos", (" ".join(p) for p in part.pos))
        streams["topic"][split] = _write_lines(
            text / f"{split}.topic",
            (" ".join([g] * len(w)) for g, w in zip(part.genre, part.words, strict=True)))
    pmb = table[table.corpus == "pmb"]
    streams["semtag_words"], streams["semtag"] = {}, {}
    for split in LM_SPLITS:
        part = pmb[pmb.split == split]
        streams["semtag_words"][split] = _write_lines(
            text / f"{split}.semtag_words", (" ".join(w.lower() for w in ws) for ws in part.words))
        streams["semtag"][split] = _write_lines(text / f"{split}.semtag",
                                                (" ".join(t) for t in part.semtag))
    dicts = {
        "lm": lm_dict, "semtag_words": lm_dict,
        "pos": _tag_dict([brown.pos], out / "dict.pos.txt"),
        "topic": _tag_dict([brown.genre.map(lambda g: [g])], out / "dict.topic.txt"),
        "semtag": _tag_dict([pmb.semtag], out / "dict.semtag.txt"),
    }
    for name, files in streams.items():
        binarize.binarize_mono(bins / name, dicts[name], files, workers, out / "preprocess.log")
    return counts


def build_nmt_data(cfg: DataConfig, get: Callable[[str], Path], out: Path, workers: int):
    """Multi30k en-de with a joint sentencepiece BPE, binarised with a joined dictionary."""
    text = out / "text"
    text.mkdir()
    m = cfg.multi30k
    names = {"train": "train", "valid": m.valid, "test": m.test}
    pairs = {}
    for split, name in names.items():
        cap = {"train": m.max_train_pairs, "test": m.max_test_pairs}.get(split)
        pairs[split] = readers.read_parallel(get(M30K.format(name=name, lang="en")),
                                             get(M30K.format(name=name, lang="de")), cap)
    raw = [_write_lines(text / f"raw.train.{lang}", (p[i] for p in pairs["train"]))
           for i, lang in enumerate(("en", "de"))]
    b = cfg.bpe
    model = bpe.train_bpe(raw, out / "spm", b.vocab_size, b.character_coverage,
                          b.input_sentence_size)
    sp = bpe.load_bpe(model)
    for split, ps in pairs.items():
        for i, lang in enumerate(("en", "de")):
            _write_lines(text / f"{split}.{lang}",
                         (" ".join(sp.encode(p[i], out_type=str)) for p in ps))
            if split == "test":
                _write_lines(text / f"ref.test.{lang}", (p[i] for p in ps))
    binarize.binarize_pair(out / "bin", {s: text / s for s in names}, "en", "de", workers,
                           out / "preprocess.log")
    counts = {lang: vocab.count_words(p[i].lower().split() for p in pairs["train"])
              for i, lang in enumerate(("en", "de"))}
    return sp, counts


def probe_tokens(table: pd.DataFrame, lm_counts: Counter, sp, nmt_counts: dict) -> pd.DataFrame:
    """One row per token of every probe set, with input- and target-aligned tags.

    LM probes (held-out Brown documents, EWT test, the user's CoNLL-U files) are word-level,
    lowercased like the LM's input.
    The NMT probe (PUD) is subword-level: English as the encoder's source, German as the
    decoder's target; every subword carries its word's tags.
    """
    probes = {
        "brown_probe": (table[(table.corpus == "brown") & (table.split == "probe")], "lm", None),
        "ewt_test": (table[table.corpus == "ewt"], "lm", None),
        "pud": (table[table.corpus == "pud_en"], "source", "en"),
    }
    probes["pud_de"] = (table[table.corpus == "pud_de"], "target", "de")
    for corpus in sorted(c for c in set(table.corpus) if c.startswith(USER)):
        probes[corpus.removeprefix(USER)] = (table[table.corpus == corpus], "lm", None)
    out = []
    for probe, (part, side, lang) in probes.items():
        name = "pud" if probe == "pud_de" else probe
        for s, row in enumerate(part.itertuples(index=False)):
            if lang is None:
                tokens = [w.lower() for w in row.words]
                owner = list(range(len(tokens)))
                freq_of = lm_counts
            else:
                tokens, owner = encode_words(row.words, lambda w: sp.encode(w, out_type=str))
                freq_of = nmt_counts[lang]
            pos_in, pos_tgt = aligned_tags(row.pos, owner)
            upos = row.upos if row.upos is not None else row.pos
            upos_in, upos_tgt = aligned_tags(upos, owner)
            for t, (tok, w) in enumerate(zip(tokens, owner, strict=True)):
                word = row.words[w]
                out.append((name, side, row.sent_id, s, t, tok, w, word,
                            t == 0 or owner[t - 1] != w, pos_in[t], pos_tgt[t], upos_in[t],
                            upos_tgt[t], row.xpos[w] if row.xpos is not None else None,
                            row.genre, row.doc_id, freq_of.get(word.lower(), 0)))
    cols = ["probe", "side", "sent_id", "sent_index", "position", "token", "word_index", "word",
            "first_subword", "pos", "pos_target", "upos", "upos_target", "xpos", "genre",
            "doc_id", "train_freq"]
    return pd.DataFrame(out, columns=cols)


def probe_manifest(tokens: pd.DataFrame) -> dict[str, dict]:
    """Per probe: its sides (`lm` for word streams, `source`/`target` for translation pairs)
    and the tagger labels it carries (tag set -> column), from the token table itself."""
    manifest = {}
    for probe, rows in tokens.groupby("probe", sort=True):
        sides = [s for s in SIDE_ORDER if s in set(rows.side)]
        labels = {tags: col for tags, col in LABEL_COLUMNS.items()
                  if col in rows and rows[col].notna().all()}
        manifest[probe] = {"sides": sides, "labels": labels, "tokens": int(len(rows))}
    return manifest


def prepare(cfg: DataConfig, out: Path, mirror: str | None, cache_dir: str | Path,
            download: bool = True) -> dict:
    """Run the whole data preparation into `out` (an empty directory); returns a summary."""
    def get(path: str) -> Path:
        return fetch(path, mirror, cache_dir, download)

    workers = cfg.preprocess_workers
    log.info("reading corpora")
    table = read_corpora(cfg, get)
    table.to_parquet(out / "sentences.parquet", index=False)
    log.info("LM and tagger data")
    (out / "lm").mkdir()
    lm_counts = build_lm_data(table, cfg, out / "lm", workers)
    pd.DataFrame(vocab.top_k(lm_counts, len(lm_counts)), columns=["word", "count"]).to_parquet(
        out / "lm" / "word_counts.parquet", index=False)
    log.info("NMT data")
    (out / "nmt").mkdir()
    sp, nmt_counts = build_nmt_data(cfg, get, out / "nmt", workers)
    log.info("probe tables")
    tokens = probe_tokens(table, lm_counts, sp, nmt_counts)
    tokens.to_parquet(out / "probe_tokens.parquet", index=False)
    (out / "probes.json").write_text(json.dumps(probe_manifest(tokens), indent=1))
    table_stats = stats.corpus_stats(table)
    table_stats.to_csv(out / "stats.csv", index=False)
    return {"stats": table_stats}
