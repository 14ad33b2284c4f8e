"""Mirror -> cache -> URL lookup with checksums; errors name the file, the paths tried, the URL."""

import gzip
import hashlib

import pytest

from data_prep.errors import DataError
from data_prep.sources import Source, fetch, load_sources


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_sources_csv_lists_every_file_the_prepare_stage_reads():
    from data_prep import prepare

    paths = set(load_sources())
    needed = {prepare.BROWN, prepare.BROWN_MAP, prepare.EWT_TEST, prepare.PUD_EN, prepare.PUD_DE}
    needed |= {prepare.PMB.format(split=s) for s in ("train", "dev", "test")}
    needed |= {prepare.M30K.format(name=n, lang=lang) for n in ("train", "val", "test_2016_flickr")
               for lang in ("en", "de")}
    assert needed <= paths
    for s in load_sources().values():
        assert s.url.startswith("https://") and len(s.sha256) == 64


def test_mirror_file_is_verified(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.txt").write_bytes(b"hello")
    sources = {"a.txt": Source("a.txt", sha(b"hello"), "https://example.invalid/a.txt", "")}
    assert fetch("a.txt", tmp_path / "m", tmp_path / "c", False, sources) == tmp_path / "m/a.txt"
    (tmp_path / "m" / "a.txt").write_bytes(b"hellp")
    with pytest.raises(DataError, match=r"m/a.txt: checksum mismatch"):
        fetch("a.txt", tmp_path / "m", tmp_path / "c", False, sources)


def test_missing_file_names_mirror_path_and_url(tmp_path):
    sources = {"d/a.txt": Source("d/a.txt", sha(b"x"), "https://example.invalid/a.txt", "")}
    with pytest.raises(DataError) as err:
        fetch("d/a.txt", tmp_path / "mirror", tmp_path / "cache", False, sources)
    text = str(err.value)
    assert "d/a.txt" in text and str(tmp_path / "mirror" / "d/a.txt") in text
    assert "https://example.invalid/a.txt" in text


def test_download_gzips_uncompressed_content_and_caches_it(tmp_path):
    upstream = tmp_path / "upstream.conllu"
    upstream.write_bytes(b"1\tx\n")
    src = Source("d/a.conllu.gz", "0" * 64, upstream.as_uri(), sha(b"1\tx\n"))
    got = fetch("d/a.conllu.gz", None, tmp_path / "cache", True, {src.path: src})
    assert got == tmp_path / "cache" / "d/a.conllu.gz"
    assert gzip.decompress(got.read_bytes()) == b"1\tx\n"
    # cached now: no download needed, content still verified
    upstream.unlink()
    assert fetch("d/a.conllu.gz", None, tmp_path / "cache", False, {src.path: src}) == got


def test_download_with_wrong_checksum_leaves_nothing(tmp_path):
    upstream = tmp_path / "up.txt"
    upstream.write_bytes(b"tampered")
    src = Source("a.txt", sha(b"original"), upstream.as_uri(), "")
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch("a.txt", None, tmp_path / "cache", True, {src.path: src})
    assert list((tmp_path / "cache").iterdir()) == []
