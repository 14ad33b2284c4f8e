"""The prepare stage's reading of a user's probe corpus (data.probes.<name>): an empty or
bad file is refused naming the key as well as the file and line."""

import pytest

from data_prep.errors import DataError
from data_prep.prepare import read_user_probe
from data_prep.settings import UserProbe

ROW = "{i}\t{w}\t{w}\t{upos}\t_\t_\t0\troot\t_\t_\n"


def test_an_empty_probe_file_names_key_and_file(tmp_path):
    path = tmp_path / "mine.conllu"
    for text in ("", "\n\n"):
        path.write_text(text)
        with pytest.raises(DataError) as refused:
            read_user_probe("mine", UserProbe(conllu=str(path)))
        assert str(refused.value).startswith(f"{path}: data.probes.mine: no sentences in it")


def test_a_probe_without_tags_names_key_file_and_line(tmp_path):
    path = tmp_path / "mine.conllu"
    path.write_text("# sent_id = s1\n" + ROW.format(i=1, w="Hi", upos="_") + "\n")
    with pytest.raises(DataError) as refused:
        read_user_probe("mine", UserProbe(conllu=str(path)))
    assert str(refused.value).startswith(f"{path}:2: data.probes.mine: token 'Hi' has no UPOS")


def test_a_probe_keeps_its_first_max_sentences(tmp_path):
    path = tmp_path / "mine.conllu"
    path.write_text("".join(f"# sent_id = s{i}\n" + ROW.format(i=1, w="Hi", upos="INTJ") + "\n"
                            for i in range(5)))
    rows = read_user_probe("mine", UserProbe(conllu=str(path), max_sentences=3))
    assert [r["sent_id"] for r in rows] == ["s0", "s1", "s2"]
    assert {r["corpus"] for r in rows} == {"user:mine"}
