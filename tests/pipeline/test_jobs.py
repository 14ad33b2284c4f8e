"""Commands forked from the job server (pipeline.jobs.run_main) run as a fresh interpreter
would run them, report their exit codes as a shell does, and write only to their log."""

import os

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
