"""Commands forked from the job server (pipeline.jobs.run_main) run as a fresh interpreter
would run them, report their exit codes as a shell does, and write only to their log."""

import os
import threading

import pytest

from pipeline import jobs


def _run(tmp_path, name: str, *argv: str) -> tuple[int, str]:
    log = tmp_path / f"{name}.log"
    env = {**os.environ, "JOBS_TEST": "seen"}
    code = jobs.run_main(f"forked_main:{name}", argv, log, env, tmp_path)
    return code, log.read_text()


def test_a_command_gets_its_arguments_environment_directory_and_log(tmp_path):
    assert "JOBS_TEST" not in os.environ
    code, log = _run(tmp_path, "echo", "--flag", "1")
    assert code == 0
    assert f"argv ['--flag', '1'] var seen cwd {tmp_path}" in log
    assert "INFO:forked:logged" in log  # the command's own logging set-up applies
    assert "error line" in log  # stderr goes to the log too
    assert os.getcwd() != str(tmp_path) and "JOBS_TEST" not in os.environ


@pytest.mark.parametrize(("name", "code", "text"), [
    ("interrupted", 130, ""), ("exits", 3, ""), ("fails", 1, "ValueError: broken on purpose")])
def test_exit_codes_are_a_shells(tmp_path, name, code, text):
    got, log = _run(tmp_path, name)
    assert got == code and text in log


def test_chains_run_side_by_side_in_order_and_a_failure_stops_only_its_chain():
    """Two workers: both chains' first steps meet at a barrier (a timeout if they ran one
    after the other); the failing chain skips its next step, the other finishes."""
    meet, done = threading.Barrier(2, timeout=10), []

    def fail():
        raise ValueError("chain a broke")

    chains = [[meet.wait, fail, lambda: done.append("a2")],
              [meet.wait, lambda: done.append("b2"), lambda: done.append("b3")]]
    with pytest.raises(ValueError, match="chain a broke"):
        jobs.run_chains(chains, workers=2)
    assert done == ["b2", "b3"]



def test_a_step_starts_its_branches_beside_the_rest_of_its_chain_and_all_are_awaited():
    """One chain, two workers: the first step's branch meets the chain's next step at a
    barrier (a timeout if it waited for the chain's end); a branch's failure is raised after
    everything else has run."""
    meet, done = threading.Barrier(2, timeout=10), []

    def fail():
        raise ValueError("branch c broke")

    def fork():
        done.append("a1")
        return [[meet.wait, lambda: done.append("b2")], [fail]]

    with pytest.raises(ValueError, match="branch c broke"):
        jobs.run_chains([[fork, meet.wait, lambda: done.append("a3")]], workers=2)
    assert sorted(done) == ["a1", "a3", "b2"]


def test_a_childs_own_error_reaches_the_parent_as_itself(tmp_path):
    """A refused checkpoint in a stage's process is raised in the parent as that
    CheckpointError (the entry point tells it in one line), the child's traceback its cause."""
    from pipeline import checkpoints

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / checkpoints.CSV).write_text("step,bytes,sha256,file\n5,1,abc,step_0000005.pt\n")
    with pytest.raises(checkpoints.CheckpointError, match="step_0000005.pt: checkpoint listed"
                       ) as got:
        jobs.call_in_process("pipeline.checkpoints:verify", tmp_path)
    assert "Traceback" in str(got.value.__cause__)


def test_a_data_error_pickles_as_itself():
    import pickle

    from data_prep.errors import DataError

    back = pickle.loads(pickle.dumps(DataError("a.conllu", "bad row", 7)))
    assert (type(back), str(back), back.path, back.line) == (DataError, "a.conllu:7: bad row",
                                                             "a.conllu", 7)
