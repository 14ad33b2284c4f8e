"""Find each corpus file: in a mirror, else in the download cache, else at its canonical URL.

Every file is verified against the sha256 in sources.csv (for a URL that serves the uncompressed
form of a file we keep gzipped, against the sha256 of its content), so a mirror, a cache and a
download all give the same bytes to the readers.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from data_prep.errors import DataError

SOURCES_CSV = Path(__file__).with_name("sources.csv")


@dataclass(frozen=True)
class Source:
    """A corpus file: its path in the mirror layout, its sha256 and where it comes from."""

    path: str
    sha256: str
    url: str
    url_sha256: str  # sha256 of what the URL serves when that is the uncompressed content


def load_sources(csv_path: Path = SOURCES_CSV) -> dict[str, Source]:
    with open(csv_path, newline="") as f:
        return {row["path"]: Source(**row) for row in csv.DictReader(f)}


def sha256_file(path: Path, decompress: bool = False) -> str:
    h = hashlib.sha256()
    opener = gzip.open if decompress else open
    with opener(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, source: Source) -> None:
    """Raise DataError unless `path` holds the bytes (or, gzipped, the content) `source` names."""
    got = sha256_file(path)
    if got == source.sha256:
        return
    if source.url_sha256 and path.suffix == ".gz":
        try:
            if sha256_file(path, decompress=True) == source.url_sha256:
                return
        except (OSError, EOFError):
            pass
    raise DataError(
        path, f"checksum mismatch: sha256 {got}, expected {source.sha256} ({source.path}); "
        "the file is corrupt or a different version: delete it or fix the mirror"
    )


def _download(source: Source, target: Path) -> None:
    """Download to a temporary file, verify, then move into place (never a half-written file)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".download-")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with urllib.request.urlopen(source.url, timeout=60) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
        if source.url_sha256:  # the URL serves the uncompressed file; we keep it gzipped
            got = sha256_file(tmp)
            if got != source.url_sha256:
                raise DataError(source.url, f"checksum mismatch: sha256 {got}, "
                                f"expected {source.url_sha256}")
            gz = tmp.with_name(tmp.name + ".gz")
            with open(tmp, "rb") as fin, gzip.GzipFile(gz, "wb", mtime=0) as fout:
                shutil.copyfileobj(fin, fout)
            gz.replace(tmp)
        else:
            verify(tmp, source)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def fetch(
    path: str,
    mirror: str | Path | None,
    cache_dir: str | Path,
    download: bool = True,
    sources: dict[str, Source] | None = None,
) -> Path:
    """Return a verified local copy of `path` (a path in the mirror layout)."""
    sources = sources if sources is not None else load_sources()
    if path not in sources:
        raise KeyError(f"{path} is not listed in {SOURCES_CSV}")
    source = sources[path]
    tried = []
    if mirror:
        candidate = Path(mirror) / path
        tried.append(f"mirror {candidate}")
        if candidate.is_file():
            verify(candidate, source)
            return candidate
    cached = Path(cache_dir) / path
    tried.append(f"cache {cached}")
    if cached.is_file():
        verify(cached, source)
        return cached
    if download:
        try:
            _download(source, cached)
            return cached
        except OSError as e:
            tried.append(f"URL {source.url} ({e})")
    else:
        tried.append(f"URL {source.url} (downloads disabled)")
    raise DataError(path, "file not found; tried " + "; ".join(tried)
                    + ". Pass mirror=DIR (or set PIPELINE_MIRROR) to a copy of the data")
