"""Shared test settings: the data mirror is ../shared/data unless PIPELINE_MIRROR says otherwise."""

import os
import subprocess
import sys
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


def run_pipeline(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """`python -m pipeline ARGS` from the repository root, output captured."""
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def smoke_prepared(mirror, tmp_path_factory):
    """The smoke experiment's prepare stage, run once per test session."""
    art = tmp_path_factory.mktemp("artifacts")
    args = ["experiment=smoke", "stages=[prepare]", f"mirror={mirror}", f"artifacts_dir={art}"]
    result = run_pipeline(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    return art, args, result


@pytest.fixture(scope="session")
def smoke_trained(smoke_prepared):
    """The smoke experiment's prepare and train stages (all six models), once per session."""
    art, args, _ = smoke_prepared
    args = [a.replace("stages=[prepare]", "stages=[prepare,train]") for a in args]
    result = run_pipeline(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    (train_dir,) = [p for p in (art / "smoke" / "train").iterdir() if p.is_dir()]
    (prepared,) = [p for p in (art / "smoke" / "prepare").iterdir() if p.is_dir()]
    return art, args, result, train_dir, prepared
