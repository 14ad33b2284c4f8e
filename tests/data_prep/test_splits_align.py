"""Brown document splits and word/subword tag alignment."""

from collections import Counter

from data_prep.align import aligned_tags, encode_words
from data_prep.splits import split_documents, subsample_documents


def docs(n_per_genre):
    return {f"c{g}{i:02d}": g for g, n in n_per_genre.items() for i in range(n)}


def test_split_is_deterministic_stratified_and_complete():
    dg = docs({"a": 40, "b": 20, "m": 6})
    fr = {"valid": 0.1, "test": 0.1, "probe": 0.2}
    s1 = split_documents(dg, fr, seed=3)
    assert s1 == split_documents(dg, fr, seed=3)
    assert s1 != split_documents(dg, fr, seed=4)
    assert set(s1) == set(dg)
    overall = Counter(s1.values())
    assert overall == {"probe": round(0.2 * 66), "test": round(0.3 * 66) - round(0.2 * 66),
                       "valid": round(0.4 * 66) - round(0.3 * 66), "train": 66 - round(0.4 * 66)}
    per = Counter((dg[d], s) for d, s in s1.items())
    for genre, n in (("a", 40), ("b", 20), ("m", 6)):
        for split, f in (("probe", 0.2), ("valid", 0.1), ("test", 0.1), ("train", 0.6)):
            assert abs(per[(genre, split)] - f * n) <= 1.5, (genre, split, per)


def test_small_genres_still_fill_every_split():
    s = split_documents(docs({g: 4 for g in "abcdefghijklmno"}),
                        {"valid": 0.1, "test": 0.1, "probe": 0.2}, seed=13)
    assert set(s.values()) == {"train", "valid", "test", "probe"}


def test_subsample_keeps_every_genre():
    dg = docs({"a": 5, "b": 2})
    assert subsample_documents(dg, 1) == ["ca00", "cb00"]
    assert len(subsample_documents(dg, None)) == 7


def test_subwords_carry_their_words_tags_read_and_predicted():
    pieces = {"unhappy": ["▁un", "happy"], "cats": ["▁cats"], "sleep": ["▁sle", "ep"]}
    toks, owner = encode_words(["unhappy", "cats", "sleep"], pieces.__getitem__)
    assert toks == ["▁un", "happy", "▁cats", "▁sle", "ep"]
    assert owner == [0, 0, 1, 2, 2]
    inp, tgt = aligned_tags(["ADJ", "NOUN", "VERB"], owner)
    assert inp == ["ADJ", "ADJ", "NOUN", "VERB", "VERB"]
    assert tgt == ["ADJ", "NOUN", "VERB", "VERB", "</s>"]
