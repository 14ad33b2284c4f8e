"""Readers that turn each corpus into rows of one tagged-sentence table.

A row is one sentence: corpus, split, sent_id, doc_id, genre, words, pos (12 universal tags),
upos and xpos (where the corpus has them), semtag (PMB). Every error names the file and line.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import conllu

from data_prep.errors import DataError
from data_prep.tagsets import UPOS_TO_12

Row = dict


def open_text(path: str | Path):
    """Open plain or gzipped UTF-8 text (a byte-order mark at its start is dropped)."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return open(path, encoding="utf-8-sig")


def numbered_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of plain or gzipped UTF-8 text; a byte that is not UTF-8, or a gzip
    file that is cut short or not gzip, is a DataError naming the file and line."""
    lineno = 0
    try:
        with open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                yield lineno, line
    except UnicodeDecodeError:
        line, what = _first_bad_byte(path)
        raise DataError(path, what, line) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(path, f"gzip file cut short or damaged after line {lineno} ({e})",
                        lineno + 1) from None


def _first_bad_byte(path: str | Path) -> tuple[int | None, str]:
    """The line and column of the first byte that is not UTF-8 (decoding is per line: a
    newline byte never occurs inside a multi-byte character)."""
    opener = gzip.open if Path(path).suffix == ".gz" else open
    with opener(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                column = len(raw[:e.start].decode("utf-8")) + 1
                return lineno, (f"not UTF-8: byte 0x{raw[e.start]:02x} at column {column} "
                                f"({e.reason}); save the file as UTF-8")
    return None, "not UTF-8"


def brown_reader(zip_path: str | Path):
    """nltk's categorized tagged-corpus reader on a Brown zip (NLTK data layout).

    nltk only opens files under its data path, so the zip's folder is added to it: the zip has
    been verified against its sha256 before it gets here.
    """
    import nltk.data
    from nltk.corpus.reader import CategorizedTaggedCorpusReader

    folder = str(Path(zip_path).resolve().parent)
    if folder not in nltk.data.path:
        nltk.data.path.append(folder)
    return CategorizedTaggedCorpusReader(
        nltk.data.ZipFilePathPointer(str(zip_path), "brown/"), r"c[a-z]\d\d",
        cat_file="cats.txt", tagset="brown", encoding="ascii",
    )


def read_brown(zip_path: str | Path, tag_map: dict[str, str], map_path: str = "tag map",
               fileids: list[str] | None = None) -> Iterator[Row]:
    """Brown through nltk's corpus reader; tags mapped to the 12 universal tags.

    Genre comes from cats.txt, the document id is the file id.
    """
    reader = brown_reader(zip_path)
    for fileid in fileids if fileids is not None else reader.fileids():
        where = f"{zip_path}!brown/{fileid}"
        genre = reader.categories(fileid)[0]
        # nltk reads one sentence per non-blank line; keep their line numbers for errors.
        line_numbers = [i for i, line in enumerate(reader.raw(fileid).splitlines(), 1)
                        if line.strip()]
        for k, sent in enumerate(reader.tagged_sents(fileid)):
            lineno = line_numbers[k] if k < len(line_numbers) else None
            if not sent:
                raise DataError(where, "empty sentence", lineno)
            words, xpos, pos = [], [], []
            for word, tag in sent:
                if not tag:
                    raise DataError(where, f"token {word!r} has no tag (expected word/tag)",
                                    lineno)
                universal = tag_map.get(tag.upper())
                if universal is None:
                    raise DataError(where, f"tag {tag!r} of {word!r} is missing from {map_path}",
                                    lineno)
                words.append(word)
                xpos.append(tag)
                pos.append(universal)
            yield {"corpus": "brown", "sent_id": f"{fileid}.{k}", "doc_id": fileid,
                   "genre": genre, "words": words, "pos": pos, "upos": None, "xpos": xpos,
                   "semtag": None}


_ID = re.compile(r"^(\d+|\d+-\d+|\d+\.\d+)$")


def _conllu_blocks(path: Path) -> Iterator[tuple[int, str, list[int]]]:
    """Yield (first line number, text, the line number of each token line) per sentence
    block, validating token lines first."""
    block: list[str] = []
    lines: list[int] = []
    start = 1
    for lineno, line in numbered_lines(path):
        if not line.strip():
            if block:
                yield start, "".join(block), lines
            block, lines, start = [], [], lineno + 1
            continue
        if not line.startswith("#"):
            cols = line.rstrip("\n").split("\t")
            if len(cols) != 10 or not _ID.match(cols[0]):
                raise DataError(path, "malformed CoNLL-U line: expected 10 tab-separated "
                                f"columns starting with a token id, got {line.rstrip()!r}",
                                lineno)
            lines.append(lineno)
        block.append(line)
    if block:
        yield start, "".join(block), lines


def read_conllu(path: str | Path, corpus: str, split: str) -> Iterator[Row]:
    """UD CoNLL-U through `conllu`; multiword-token and empty-node lines are skipped. A
    ``# newdoc`` comment starts a document that holds until the next (UD's rule); before any,
    a sentence's document is its sent_id up to the last ``-`` (EWT's)."""
    path = Path(path)
    doc = None
    for start, text, lines in _conllu_blocks(path):
        sentences = conllu.parse(text)
        if not sentences or not [t for t in sentences[0] if isinstance(t["id"], int)]:
            raise DataError(path, "empty sentence (comments but no token lines)", start)
        sent = sentences[0]
        for t, lineno in zip(sent, lines, strict=True):
            if isinstance(t["id"], int) and t["upos"] in (None, "_"):
                raise DataError(path, f"token {t['form']!r} has no UPOS tag (column 4 is '_'); "
                                "a probe corpus needs UD's 17 tags", lineno)
            if isinstance(t["id"], int) and t["upos"] not in UPOS_TO_12:
                raise DataError(path, f"UPOS {t['upos']!r} of {t['form']!r} is not one of UD's "
                                f"17 tags ({', '.join(sorted(UPOS_TO_12))})", lineno)
        tokens = [t for t in sent if isinstance(t["id"], int)]
        upos = [t["upos"] for t in tokens]
        sent_id = sent.metadata.get("sent_id", f"{corpus}.{start}")
        if "newdoc id" in sent.metadata or "newdoc" in sent.metadata:
            doc = sent.metadata.get("newdoc id") or sent_id  # an unnamed one: its first sentence
        yield {"corpus": corpus, "split": split, "sent_id": sent_id,
               "doc_id": doc or sent_id.rsplit("-", 1)[0],
               "genre": None, "words": [t["form"] for t in tokens],
               "pos": [UPOS_TO_12[u] for u in upos], "upos": upos,
               "xpos": [t["xpos"] or "_" for t in tokens], "semtag": None}


def read_pmb(path: str | Path, split: str) -> Iterator[Row]:
    """PMB gold semantic tags (7 tab-separated columns, sem-tag in column 4).

    A sentence starts at each `# raw sent` comment; `~`-joined multiword tokens are split into
    words that each keep the tag.
    """
    path = Path(path)
    words: list[str] = []
    tags: list[str] = []
    start = doc = None
    n = 0

    def flush():
        nonlocal words, tags, n
        if start is not None:
            if not words:
                raise DataError(path, "empty sentence (no token lines)", start)
            n += 1
            row = {"corpus": "pmb", "split": split, "sent_id": f"pmb-{split}-{n}",
                   "doc_id": doc, "genre": None, "words": words, "pos": None, "upos": None,
                   "xpos": None, "semtag": tags}
            words, tags = [], []
            return row
        return None

    for lineno, line in numbered_lines(path):
        line = line.rstrip("\n")
        if line.startswith("# newdoc id"):
            doc = line.split("=", 1)[1].strip()
        elif line.startswith("# raw sent"):
            row = flush()
            if row:
                yield row
            start = lineno
        elif line.startswith("#") or not line.strip():
            continue
        else:
            cols = line.split("\t")
            if len(cols) != 7 or start is None:
                raise DataError(path, "malformed PMB line: expected 7 tab-separated "
                                f"columns after a '# raw sent' comment, got {line!r}", lineno)
            for part in cols[0].split("~"):
                if part:
                    words.append(part)
                    tags.append(cols[3])
    row = flush()
    if row:
        yield row


def read_parallel(src: str | Path, tgt: str | Path,
                  max_pairs: int | None = None) -> list[tuple[str, str]]:
    """Line-aligned parallel text; different lengths and empty lines are errors."""
    a = [line.rstrip("\n") for _, line in numbered_lines(src)]
    b = [line.rstrip("\n") for _, line in numbered_lines(tgt)]
    if len(a) != len(b):
        shorter, n = (src, len(a)) if len(a) < len(b) else (tgt, len(b))
        raise DataError(shorter, f"parallel files differ in length: {src} has {len(a)} lines, "
                        f"{tgt} has {len(b)}; first line without a partner", n + 1)
    pairs = list(zip(a, b, strict=True))[:max_pairs]
    for i, (x, y) in enumerate(pairs, 1):
        for path, text in ((src, x), (tgt, y)):
            if not text.strip():
                raise DataError(path, "empty sentence in parallel file", i)
    return pairs
