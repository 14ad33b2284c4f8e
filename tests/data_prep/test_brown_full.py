"""The whole Brown corpus through our reader matches MANIFEST.md's published counts."""

from collections import Counter

import pytest

from data_prep import readers
from data_prep.tagsets import UNIVERSAL_12, read_tag_map

pytestmark = pytest.mark.slow


def test_brown_counts_match_the_manifest(mirror):
    zip_path = mirror / "nltk_data/corpora/brown.zip"
    tag_map = read_tag_map(mirror / "nltk_data/taggers/universal_tagset/en-brown.map")
    sentences = tokens = 0
    tags: Counter = Counter()
    genres = set()
    for row in readers.read_brown(zip_path, tag_map):
        sentences += 1
        tokens += len(row["words"])
        tags.update(row["pos"])
        genres.add(row["genre"])
    assert (sentences, tokens) == (57_340, 1_161_192)
    assert set(tags) == set(UNIVERSAL_12) and len(genres) == 15
    assert tags["NOUN"] == 275_558 and tags["X"] == 1_386
