"""The errors a user can cause reach them as one line on stderr, naming what and where, with
exit code 1 and no traceback, whether our code raises them or Hydra does while composing the
config; HYDRA_FULL_ERROR=1 still shows the traceback; errors of our code are told apart from
bugs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, compose

from data_prep.errors import DataError
from pipeline.checkpoints import CheckpointError
from pipeline.config import CONFIG_DIR
from pipeline.errors import one_line
from pipeline.runner import MissingInput
from pipeline.store import Invalid
from pipeline.tables import load_tables

BYO = Path(CONFIG_DIR, "experiment", "byo_example.yaml")


def run(*args: str, full_error: bool = False) -> subprocess.CompletedProcess:
    """`python -m pipeline ARGS` (nothing trained: each case stops before any work)."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    if full_error:
        env["HYDRA_FULL_ERROR"] = "1"
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def required_line() -> int:
    return next(i for i, text in enumerate(BYO.read_text().splitlines(), 1)
                if text.strip().startswith("revisions: ???"))


CASES = {  # name: (overrides, what the one line says)
    "unknown key": (["experiment=smoke", "+analysis.per_tag.max_nn=50"],
                    "config error: analysis.per_tag.max_nn: unknown key; analysis.per_tag has: "
                    "freq_bins, max_n, metrics, min_n, min_tags, random_subsets; did you mean "
                    "max_n? (set in the command line (+analysis.per_tag.max_nn=50))"),
    "unknown key without +": (["experiment=smoke", "analysis.varianse_rule=s"],
                              "config error: analysis.varianse_rule: unknown key; analysis "
                              "has: "),
    "a type": (["experiment=smoke", "seed=abc"],
               "config error: seed: Value 'abc' of type 'str' could not be converted to Integer "
               "(set in the command line (seed=abc))"),
    "the last of two": (["experiment=smoke", "seed=1", "seed=abc"],
                        "(set in the command line (seed=abc))"),
    "a probe's unknown key": (["experiment=smoke", "+data.probes.mine.conllu=/dev/null",
                               "+data.probes.mine.maxsent=3"],
                              "config error: data.probes.mine.maxsent: unknown key; "
                              "data.probes.mine has: conllu, max_sentences"),
    "no such experiment": (["experiment=nope"],
                           "config error: experiment=nope: no such option "
                           "(conf/experiment/nope.yaml); experiment has: annealed_long, "),
    "required by byo_example": (["experiment=byo_example"],
                                f"config error: model.theirs.revisions is required by "
                                f"experiment byo_example ({BYO}:{required_line()}: "),
    "no revisions folder": (["experiment=byo_example",
                             "model.theirs.revisions=[/nonexistent/revisions]"],
                            "/nonexistent/revisions"),
}


@pytest.mark.parametrize("case", CASES)
def test_each_bad_input_is_one_line_with_exit_1(case, tmp_path):
    overrides, says = CASES[case]
    result = run(*overrides, f"artifacts_dir={tmp_path}", "mirror=null", "dry_run=true")
    assert result.returncode == 1, result.stderr[-3000:]
    assert len(result.stderr.splitlines()) == 1, result.stderr[-3000:]
    assert says in result.stderr


def test_an_artifacts_dir_that_is_a_file_is_one_line_naming_it(tmp_path):
    art = tmp_path / "artifacts"
    art.write_text("a file")
    result = run("experiment=smoke", f"artifacts_dir={art}", "mirror=null", "dry_run=true")
    assert result.returncode == 1, result.stderr[-3000:]
    assert len(result.stderr.splitlines()) == 1, result.stderr[-3000:]
    assert f"cannot make the run's folder (hydra.run.dir or hydra.sweep.dir, below " \
        f"artifacts_dir) {art}/smoke/runs/" in result.stderr
    assert result.stderr.rstrip().endswith(f": {art} is a file, not a folder")


@pytest.mark.parametrize("overrides", [["seed=abc"], ["experiment=nope"]])
def test_hydra_full_error_still_shows_the_traceback(overrides, tmp_path):
    result = run("experiment=smoke", f"artifacts_dir={tmp_path}", "mirror=null",
                 "dry_run=true", *overrides, full_error=True)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert ("ConfigError: config error: seed" if overrides == ["seed=abc"]
            else "Could not find 'experiment/nope'") in result.stderr


@pytest.mark.slow  # runs the prepare stage (about 6 s)
def test_a_data_error_in_prepare_is_one_line(mirror, tmp_path):
    bad = tmp_path / "bad.conllu"
    bad.write_text("# sent_id = 1\n1\tThe\tthe\tDET\t_\t_\t2\tdet\t_\t_\n2\tcat\n\n")
    result = run("experiment=smoke", f"mirror={mirror}", f"artifacts_dir={tmp_path / 'art'}",
                 f"+data.probes.bad.conllu={bad}", "stages=[prepare]", "train.parallel=1")
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr[-3000:]
    assert result.stderr.startswith(f"data error: {bad}:3: ")


def test_the_project_s_errors_are_one_line_and_bugs_are_not(tmp_path):
    assert one_line(DataError("x.conllu", "bad row\nsee the format", 3)) == \
        "data error: x.conllu:3: bad row see the format"
    assert one_line(CheckpointError("ck.pt: changed")) == "error: ck.pt: changed"
    assert one_line(MissingInput("stage plot needs analyze")) == "error: stage plot needs analyze"
    assert one_line(Invalid("a.parquet: truncated")) == "error: a.parquet: truncated"
    with pytest.raises(FileNotFoundError) as ours:
        load_tables(tmp_path)  # our message, which names the folder
    assert one_line(ours.value) == f"error: no tables in {tmp_path}: run the analyze stage first"
    with pytest.raises(FileNotFoundError) as system:
        open(tmp_path / "absent")  # noqa: SIM115  a library's or the system's: a bug here
    assert one_line(system.value) is None
    assert one_line(RuntimeError("something broke")) is None
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError) as blocked:
        (tmp_path / "file" / "sub").mkdir(parents=True)
    assert one_line(blocked.value) == (f"error: cannot make the folder {tmp_path}/file/sub: "
                                       f"{tmp_path}/file is a file, not a folder")


@pytest.mark.parametrize("override, says", [
    ("seed=[1", "config error: cannot parse the override 'seed=[1': "),
    ("train=nope", "config error: train=nope: no such option (conf/train/nope.yaml); train has: "
                   "cpu, gpu"),
    ("model.tagger_pos.hiden=3", "config error: model.tagger_pos.hiden: unknown key; "
                                 "model.tagger_pos has: "),
    ("data.probes.mine.conllu=x", "config error: data.probes.mine: not in the config; to add it, "
                                  "use +data.probes.mine.conllu=x"),
])
def test_what_hydra_refuses_is_one_line_naming_the_override(override, says):
    with pytest.raises(Exception) as err:
        compose("experiment=smoke", override)
    line = one_line(err.value)
    assert line is not None and line.startswith(says), line


def test_the_entry_point_imports_no_torch_before_a_stage_runs():
    """A refused command line answers in about a second: torch (over a second to import) is
    imported by the stages that compute, not by the entry point, the plan or the registry."""
    code = "import sys, pipeline.__main__; print(sorted({'torch', 'scipy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
