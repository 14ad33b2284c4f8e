"""Readers on tiny fixture files: good input parses, each kind of bad input names file and line."""

import gzip
import zipfile

import pytest

from data_prep import readers
from data_prep.errors import DataError
from data_prep.tagsets import read_tag_map

CATS = "ca01 news\ncb01 editorial\n"
CA01 = ("\n\n\tThe/at Fulton/np-tl County/nn-tl said/vbd ./.\n\n"
        "\tIt/pps was/bedz ./.\n")
CB01 = "\n\n\tWe/ppss agree/vb ./.\n"
BROWN_MAP = ("AT\tDET\nNP-TL\tNOUN\nNN-TL\tNOUN\nVBD\tVERB\n.\t.\nPPS\tPRON\nBEDZ\tVERB\n"
             "PPSS\tPRON\nVB\tVERB\n")


def make_brown(tmp_path, ca01=CA01):
    path = tmp_path / "brown.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("brown/cats.txt", CATS)
        z.writestr("brown/ca01", ca01)
        z.writestr("brown/cb01", CB01)
    mp = tmp_path / "en-brown.map"
    mp.write_text(BROWN_MAP)
    return path, read_tag_map(mp)


def test_brown_reads_sentences_genres_and_universal_tags(tmp_path):
    path, tag_map = make_brown(tmp_path)
    rows = list(readers.read_brown(path, tag_map))
    assert [r["doc_id"] for r in rows] == ["ca01", "ca01", "cb01"]
    assert rows[0]["genre"] == "news" and rows[2]["genre"] == "editorial"
    assert rows[0]["words"] == ["The", "Fulton", "County", "said", "."]
    assert rows[0]["pos"] == ["DET", "NOUN", "NOUN", "VERB", "."]
    assert rows[0]["xpos"][1] == "NP-TL"  # nltk upper-cases Brown tags


def test_brown_token_without_tag_names_file_and_line(tmp_path):
    path, tag_map = make_brown(tmp_path, ca01="\n\n\tThe/at Fulton/np-tl\n\n\tIt was/bedz\n")
    with pytest.raises(DataError, match=r"brown/ca01:5: token 'It' has no tag"):
        list(readers.read_brown(path, tag_map))


def test_brown_tag_missing_from_mapping(tmp_path):
    path, tag_map = make_brown(tmp_path, ca01="\n\tThe/at dog/zz ./.\n")
    with pytest.raises(DataError, match=r"ca01:2: tag 'ZZ' of 'dog' is missing from"):
        list(readers.read_brown(path, tag_map, "en-brown.map"))


def test_malformed_tag_map(tmp_path):
    mp = tmp_path / "bad.map"
    mp.write_text("AT\tDET\nNN NOUN\n")
    with pytest.raises(DataError, match=r"bad.map:2: malformed mapping"):
        read_tag_map(mp)


CONLLU = """# sent_id = s1
# text = Don't go.
1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tDo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_
3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

# sent_id = s2
1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_

"""


def write_gz(path, text):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(text)
    return path


def test_conllu_skips_multiword_lines_and_maps_upos(tmp_path):
    rows = list(readers.read_conllu(write_gz(tmp_path / "t.conllu.gz", CONLLU), "ewt", "test"))
    assert [r["sent_id"] for r in rows] == ["s1", "s2"]
    assert rows[0]["words"] == ["Do", "n't", "go", "."]
    assert rows[0]["upos"] == ["AUX", "PART", "VERB", "PUNCT"]
    assert rows[0]["pos"] == ["VERB", "PRT", "VERB", "."]
    assert rows[1]["xpos"] == ["UH"]


def test_conllu_malformed_line(tmp_path):
    bad = CONLLU.replace("3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_", "3 go go VERB")
    path = tmp_path / "t.conllu"
    path.write_text(bad)
    with pytest.raises(DataError, match=r"t.conllu:6: malformed CoNLL-U line"):
        list(readers.read_conllu(path, "ewt", "test"))


def test_conllu_empty_sentence(tmp_path):
    path = tmp_path / "t.conllu"
    path.write_text(CONLLU + "# sent_id = s3\n# text = \n\n")
    with pytest.raises(DataError, match=r"t.conllu:12: empty sentence"):
        list(readers.read_conllu(path, "ewt", "test"))


def test_parallel_files_of_different_length(tmp_path):
    en = write_gz(tmp_path / "x.en.gz", "a b\nc d\ne f\n")
    de = write_gz(tmp_path / "x.de.gz", "a b\nc d\n")
    with pytest.raises(DataError, match=r"x.de.gz:3: parallel files differ in length"):
        readers.read_parallel(en, de)


def test_parallel_empty_sentence(tmp_path):
    en = write_gz(tmp_path / "x.en.gz", "a b\n\n")
    de = write_gz(tmp_path / "x.de.gz", "a b\nc\n")
    with pytest.raises(DataError, match=r"x.en.gz:2: empty sentence"):
        readers.read_parallel(en, de)
    assert readers.read_parallel(en, de, max_pairs=1) == [("a b", "a b")]


PMB = """# newdoc id = p00/d0001
# raw sent = Alfred Nobel slept.
Alfred~Nobel\tAlfred~Nobel\talfred~nobel\tPER\tn\tO\t[]
slept\tslept\tsleep\tEXS\ts\\np\tsleep.v.01\t[]
.\t.\t.\tNIL\t.\tO\t[]

# newdoc id = p00/d0002
# raw sent = Hi.
Hi\tHi\thi\tGRE\ts\tO\t[]
"""


def test_pmb_splits_multiword_tokens_keeping_the_tag(tmp_path):
    rows = list(readers.read_pmb(write_gz(tmp_path / "train.conll.gz", PMB), "train"))
    assert rows[0]["words"] == ["Alfred", "Nobel", "slept", "."]
    assert rows[0]["semtag"] == ["PER", "PER", "EXS", "NIL"]
    assert rows[1]["doc_id"] == "p00/d0002" and rows[1]["semtag"] == ["GRE"]


def test_pmb_malformed_line(tmp_path):
    path = tmp_path / "t.conll"
    path.write_text(PMB.replace("slept\tslept\tsleep\tEXS", "slept EXS"))
    with pytest.raises(DataError, match=r"t.conll:4: malformed PMB line"):
        list(readers.read_pmb(path, "train"))


def test_pmb_empty_sentence(tmp_path):
    path = tmp_path / "t.conll"
    path.write_text("# raw sent = \n\n" + PMB)
    with pytest.raises(DataError, match=r"t.conll:1: empty sentence"):
        list(readers.read_pmb(path, "train"))


def test_a_users_conllu_names_the_line_of_a_bad_row_and_of_an_unknown_tag(tmp_path):
    """A user's probe corpus (data.probes.<name>.conllu) is read by the same checked reader:
    an unknown UPOS names the token's own line, a malformed row its line."""
    path = tmp_path / "mine.conllu"
    path.write_text(CONLLU.replace("3\tgo\tgo\tVERB", "3\tgo\tgo\tVRB"))
    with pytest.raises(DataError, match=r"mine.conllu:6: UPOS 'VRB' of 'go' is not one of"):
        list(readers.read_conllu(path, "user:mine", "probe"))
    path.write_text(CONLLU.replace("4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_", "4 . . PUNCT"))
    with pytest.raises(DataError, match=r"mine.conllu:7: malformed CoNLL-U line"):
        list(readers.read_conllu(path, "user:mine", "probe"))


def test_a_byte_that_is_not_utf8_names_its_line_and_column(tmp_path):
    """Latin-1 'é' (0xe9) in line 6's form: the error gives that line and the character
    column of the byte, in plain and gzipped files alike."""
    raw = CONLLU.replace("3\tgo\tgo", "3\tgé\tgo").encode("utf-8").replace(b"\xc3\xa9", b"\xe9")
    plain = tmp_path / "mine.conllu"
    plain.write_bytes(raw)
    packed = tmp_path / "mine.conllu.gz"
    packed.write_bytes(gzip.compress(raw))
    for path in (plain, packed):
        with pytest.raises(DataError, match=rf"{path.name}:6: not UTF-8: byte 0xe9 at column 4"):
            list(readers.read_conllu(path, "user:mine", "probe"))
    with pytest.raises(DataError, match=r"x.en:2: not UTF-8: byte 0xff at column 3"):
        (tmp_path / "x.en").write_bytes(b"a b\nc \xff\n")
        (tmp_path / "x.de").write_bytes(b"a b\nc d\n")
        readers.read_parallel(tmp_path / "x.en", tmp_path / "x.de")


def test_a_cut_gzip_file_names_the_line_after_the_last_read(tmp_path):
    packed = gzip.compress((CONLLU * 50).encode())
    path = tmp_path / "t.conllu.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match=r"t.conllu.gz:\d+: gzip file cut short"):
        list(readers.read_conllu(path, "ewt", "test"))
    path.write_bytes(b"not gzip at all\n")
    with pytest.raises(DataError, match=r"t.conllu.gz:1: gzip file cut short or damaged"):
        list(readers.read_pmb(path, "train"))


def test_a_byte_order_mark_is_not_part_of_the_first_line(tmp_path):
    path = tmp_path / "t.conllu"
    path.write_bytes(b"\xef\xbb\xbf" + CONLLU.encode())
    assert [r["sent_id"] for r in readers.read_conllu(path, "ewt", "test")] == ["s1", "s2"]


def test_a_token_without_upos_names_its_line(tmp_path):
    path = tmp_path / "t.conllu"
    path.write_text(CONLLU.replace("1\tYes\tyes\tINTJ", "1\tYes\tyes\t_"))
    with pytest.raises(DataError, match=r"t.conllu:10: token 'Yes' has no UPOS tag"):
        list(readers.read_conllu(path, "ewt", "test"))


def sentence(sent_id, word="Hi"):
    return f"# sent_id = {sent_id}\n1\t{word}\t{word.lower()}\tINTJ\tUH\t_\t0\troot\t_\t_\n\n"


def test_newdoc_holds_until_the_next_newdoc(tmp_path):
    """UD: `# newdoc` starts a document that the following sentences belong to; before any,
    a sentence's document is its sent_id up to the last '-'; an unnamed newdoc is named after
    its first sentence."""
    path = tmp_path / "t.conllu"
    path.write_text(sentence("blog-0001") + "# newdoc id = n01\n" + sentence("n01001")
                    + sentence("n01002") + sentence("n01003") + "# newdoc id = n02\n"
                    + sentence("n02001") + sentence("n02002") + "# newdoc\n" + sentence("x7")
                    + sentence("x8"))
    rows = list(readers.read_conllu(path, "pud_en", "probe"))
    assert [r["doc_id"] for r in rows] == ["blog", "n01", "n01", "n01", "n02", "n02", "x7",
                                           "x7"]
