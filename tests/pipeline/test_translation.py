"""pipeline.translation: the sentence pairs of each set, as pieces and as text."""

import pandas as pd
import pytest

from pipeline import translation


def test_pairs_of_test2016_and_pud_from_the_prepared_files(tmp_path):
    text = tmp_path / "nmt" / "text"
    text.mkdir(parents=True)
    (text / "test.en").write_text("▁a ▁dog\n▁two ▁c ats\n▁x\n")
    (text / "test.de").write_text("▁ein ▁Hund\n▁zwei ▁Kat zen\n▁y\n")
    (text / "ref.test.en").write_text("a dog\ntwo cats\nx\n")
    (text / "ref.test.de").write_text("ein Hund\nzwei Katzen\ny\n")
    rows = [("source", 0, 0, "▁he", 0, "he"), ("source", 0, 1, "▁ran", 1, "ran"),
            ("target", 0, 0, "▁er", 0, "er"), ("target", 0, 1, "▁li", 1, "lief"),
            ("target", 0, 2, "ef", 1, "lief"), ("source", 1, 0, "▁no", 0, "no"),
            ("target", 1, 0, "▁nein", 0, "nein")]
    tokens = pd.DataFrame(rows, columns=["side", "sent_index", "position", "token", "word_index",
                                         "word"]).assign(probe="pud")
    tokens.to_parquet(tmp_path / "probe_tokens.parquet")
    t = translation.load_pairs(tmp_path, "test2016", 2)
    assert t.source == [["▁a", "▁dog"], ["▁two", "▁c", "ats"]]
    assert t.target_text == ["ein Hund", "zwei Katzen"]
    p = translation.load_pairs(tmp_path, "pud", None)
    assert p.target == [["▁er", "▁li", "ef"], ["▁nein"]]
    assert p.target_text == ["er lief", "nein"] and p.source_text == ["he ran", "no"]
    assert translation.detokenize(["▁zwei", "▁Kat", "zen", "."]) == "zwei Katzen."
    with pytest.raises(ValueError, match=r"translate.sets names 'wmt'; the sets are"):
        translation.load_pairs(tmp_path, "wmt", None)
