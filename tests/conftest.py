"""Shared test settings: the data mirror is ../shared/data unless PIPELINE_MIRROR says otherwise."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("PIPELINE_MIRROR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def mirror() -> Path:
    if not (MIRROR / "nltk_data").is_dir():
        message = f"no data mirror at {MIRROR}; set PIPELINE_MIRROR"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return MIRROR
