"""Shared test settings: the data mirror is ../shared/data unless PIPELINE_MIRROR says otherwise."""

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("PIPELINE_MIRROR", REPO.parent / "shared" / "data"))


def running(pid: int) -> bool:
    """Whether process ``pid`` is alive (a zombie, dead but not reaped, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def assert_gone_within(pids: Iterable[int], seconds: float, what: str) -> None:
    """Wait until every process of ``pids`` has died; fail after ``seconds`` naming those
    still ``what`` (e.g. "alive after SIGKILL of their parent")."""
    deadline = time.monotonic() + seconds
    while alive := {p for p in pids if running(p)}:
        assert time.monotonic() < deadline, f"processes {sorted(alive)} {what}"
        time.sleep(0.1)


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
    if (os.environ.get("PYTEST_XDIST_WORKER") and "-m" not in args
            and not any(a.startswith("train.parallel=") for a in args)):
        args = (*args, "train.parallel=1")  # the other test process is the second core's
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def compose(*overrides: str):
    """The pipeline's config for these command-line overrides (as `python -m pipeline`)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from pipeline.config import CONFIG_DIR, CONFIG_NAME

    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        return hydra_compose(CONFIG_NAME, overrides=list(overrides))


def plan(*overrides: str):
    """Where every stage and model unit of this config lives (pipeline.plan.plan)."""
    from pipeline.plan import plan as stage_plan

    return stage_plan(compose(*overrides))


def units(nodes, stage: str) -> dict[str, Path]:
    return {m: u.dir for m, u in nodes[stage].units.items()}


def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist, the tests that read the shared smoke training (their node ids carry
    its fixture parameter, ``[smoke]``) run in one process, in order, so that none sees
    another's changes to those artifacts half-made; the tests of an end-to-end module
    (``*_smoke.py``) stay in one process, so that its module fixture (a whole experiment) runs
    once; the others are spread over the rest. (xdist's own loadgroup does not group under
    pytest 9: it renames a node id pytest no longer reads.)"""
    from xdist.scheduler import LoadScopeScheduling

    class SmokeGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if SMOKE_ID.search(nodeid):
                return "smoke"
            module = nodeid.split("::")[0]
            return module if module.endswith("_smoke.py") else nodeid

    return SmokeGroup(config, log)


SMOKE_ID = re.compile(r"\[(.*-)?smoke(-.*)?\]$")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first, in their order, then the rest: under pytest-xdist the processes
    then end on short tests together instead of one running a minute-long test alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _shared_dir(tmp_path_factory, worker_id: str, name: str) -> Path:
    """A folder every xdist worker of this session sees (one per worker otherwise)."""
    if worker_id == "master":
        return tmp_path_factory.mktemp(name)
    shared = tmp_path_factory.getbasetemp().parent / name
    shared.mkdir(exist_ok=True)
    return shared


@pytest.fixture(scope="session", autouse=True)
def synthstudy_cache(tmp_path_factory, worker_id):
    """The folder in which tests/synthstudy.py shares its results between processes."""
    os.environ["SYNTHSTUDY_CACHE"] = str(_shared_dir(tmp_path_factory, worker_id, "synthstudy"))


@pytest.fixture(scope="session")
def smoke_prepared(mirror, tmp_path_factory, worker_id):
    """The smoke experiment's prepare stage, run once per test session: both xdist workers
    ask for it in one artifacts dir, and the pipeline's lock makes the second reuse it."""
    art = _shared_dir(tmp_path_factory, worker_id, "artifacts")
    args = ["experiment=smoke", "stages=[prepare]", f"mirror={mirror}", f"artifacts_dir={art}"]
    result = run_pipeline(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    return art, args, result


@pytest.fixture(scope="session", params=["smoke"])
def smoke_trained(smoke_prepared):
    """The smoke experiment's prepare and train stages (every model), once per session:
    (artifacts dir, args, result, train units {model: dir}, prepare dir)."""
    art, args, _ = smoke_prepared
    args = [a.replace("stages=[prepare]", "stages=[prepare,train]") for a in args]
    result = run_pipeline(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    nodes = plan(*[a for a in args if not a.startswith("stages=")])
    return art, args, result, units(nodes, "train"), nodes["prepare"].dir
