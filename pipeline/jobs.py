"""Independent jobs side by side, and a clean stop.

Per-model work runs as chains (a model's training, then its extraction), ``workers`` chains at
a time, each in its own thread; heavy steps (fairseq-train, fairseq-generate, extraction) run in
child processes forked from a server that has imported torch and fairseq once per run,
registered here, so that SIGINT/SIGTERM can stop every one of them promptly and leave what they
wrote resumable.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import multiprocessing
import os
import pickle
import select
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from analysis.workers import die_with_parent

log = logging.getLogger(__name__)

STOP = threading.Event()
_CHILDREN: set = set()
_GUARD = threading.Lock()
GRACE_S = 5.0  # a stopped child gets this long to exit before it is killed


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (raised where work notices it)."""


def exit_code() -> int:
    """The shell's exit status for a run stopped by a signal: 128 + its number (130 for
    SIGINT, 143 for SIGTERM); SIGINT's when the stop came from a child."""
    return 128 + int(STOPPED_BY.get("signal", signal.SIGINT))


STOPPED_BY: dict[str, int] = {}


def check_stop() -> None:
    if STOP.is_set():
        raise Interrupted("stopped by a signal")


@contextlib.contextmanager
def _registered(child):
    with _GUARD:
        _CHILDREN.add(child)
    try:
        yield child
    finally:
        with _GUARD:
            _CHILDREN.discard(child)


def stop_children() -> None:
    """Ask every live child to stop (SIGTERM), then kill those still alive after GRACE_S."""
    with _GUARD:
        children = list(_CHILDREN)
    for child in children:
        with contextlib.suppress(Exception):
            child.terminate()
    for child in children:
        with contextlib.suppress(Exception):
            child.join(GRACE_S)
        with contextlib.suppress(Exception):
            if child.is_alive():
                child.kill()


def was_stopped(returncode: int) -> bool:
    """Whether a child's exit means it was stopped (by us or a terminal), not that it crashed."""
    stops = {signal.SIGINT, signal.SIGTERM, signal.SIGKILL, signal.SIGHUP}
    return STOP.is_set() or (returncode < 0 and -returncode in stops) or returncode == 130


def _adopted(parent: int) -> None:
    """In a forked job: die with the pipeline ``parent`` (a thread waits on its pidfd; the
    kernel's parent-death signal covers the forkserver), or exit at once if it has gone."""
    die_with_parent()
    if parent not in (os.getppid(), _parent_of(os.getppid())):
        os._exit(1)
    with contextlib.suppress(AttributeError, OSError):  # pidfds: Linux 5.3 and later
        pidfd = os.pidfd_open(parent)
        threading.Thread(target=_kill_self_after, args=(pidfd,), daemon=True).start()


def _kill_self_after(pidfd: int) -> None:
    select.select([pidfd], [], [])  # readable once that process has exited
    os.kill(os.getpid(), signal.SIGKILL)


def _child_main(target: str, args: tuple, threads: int, conn, parent: int) -> None:
    from pipeline.runtime import set_threads

    _adopted(parent)
    set_threads(threads)
    try:
        module, name = target.rsplit(":", 1)
        result = getattr(importlib.import_module(module), name)(*args)
        conn.send(("ok", result))
    except BaseException as err:  # sent to the parent, which re-raises it there
        conn.send(("error", (f"{type(err).__name__}: {err}\n{traceback.format_exc()}",
                             _pickled(err))))
    finally:
        conn.close()


def _pickled(err: BaseException) -> bytes | None:
    """``err`` pickled when it is an Exception that comes back equal in type and message
    (the parent raises it as itself: a data or checkpoint error stays one), else None."""
    if not isinstance(err, Exception):
        return None
    try:
        data = pickle.dumps(err)
        back = pickle.loads(data)
    except Exception:  # noqa: BLE001  not picklable: the parent gets the text only
        return None
    return data if type(back) is type(err) and str(back) == str(err) else None


def _command_main(main: str, argv: list[str], log_path: str, env: dict[str, str], cwd: str,
                  threads: int, parent: int) -> None:
    """A command-line entry point in a forked job, set up as a fresh interpreter would run it
    (environment, directory, output, warning and logging defaults, sys.argv); exits with its
    code, 130 after KeyboardInterrupt as a shell reports SIGINT."""
    from pipeline.runtime import set_threads

    _adopted(parent)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    if env.get("PYTHONWARNINGS") == "ignore":
        warnings.simplefilter("ignore")
    logging.root.handlers.clear()  # the preload's import of fairseq configured them; the
    logging.root.setLevel(logging.WARNING)  # entry point's own basicConfig must apply
    multiprocessing.set_start_method(None, force=True)  # the platform's, not the forkserver
    set_threads(threads)
    sys.argv = [main, *argv]
    try:
        module, name = main.rsplit(":", 1)
        getattr(importlib.import_module(module), name)()
        code = 0
    except KeyboardInterrupt:
        code = 130
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else int(err.code is not None)
        if isinstance(err.code, str):
            print(err.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001  reported in the log, as an interpreter would
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()  # a forked process skips them; fairseq closes TensorBoard in one
    sys.exit(code)


def _parent_of(pid: int) -> int | None:
    """The parent pid of process ``pid`` (from /proc), None when it has gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _server():
    """multiprocessing's forkserver context, its server importing pipeline.preload."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["pipeline.preload"])  # read when the server starts
    return ctx


def call_in_process(target: str, *args, threads: int = 1):
    """``module:function(*args)`` in a fresh process with ``threads`` torch threads, forked by
    multiprocessing's forkserver, which imports pipeline.preload once per run; returns the
    result, or raises the child's exception (RuntimeError where it does not pickle), its
    cause a RuntimeError holding the child's traceback."""
    check_stop()
    ctx = _server()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(target, args, threads, send, os.getpid()),
                       daemon=True)
    with _registered(proc):
        proc.start()
        send.close()
        try:
            status, payload = recv.recv()
        except EOFError:
            status, payload = "error", f"the process exited with code {proc.exitcode}"
        proc.join()
    check_stop()
    if status == "ok":
        return payload
    text, pickled = payload if isinstance(payload, tuple) else (payload, None)
    failure = RuntimeError(f"{target} failed in its process: {text}")
    if pickled is None:
        raise failure
    raise pickle.loads(pickled) from failure  # its own type; the child's traceback as cause


def run_main(main: str, argv: Sequence[str], log_path: str | os.PathLike, env: dict[str, str],
             cwd: str | os.PathLike, threads: int = 1, tick: Callable[[], None] | None = None,
             every: float = 30.0) -> int:
    """A command-line entry point, ``module:function`` (e.g. ``fairseq_cli.train:cli_main``),
    run with arguments ``argv``, environment ``env`` and directory ``cwd`` in a process forked
    as call_in_process's are (fairseq is imported once per run, not once per command), its
    output appended to ``log_path``; returns its exit code (negative: killed by that signal)."""
    check_stop()
    proc = _server().Process(target=_command_main, args=(  # not daemonic: it may have its own
        main, [str(a) for a in argv], str(log_path), dict(env), str(cwd), threads, os.getpid()))
    with _registered(proc):
        proc.start()
        while True:
            proc.join(every if tick else None)
            if proc.exitcode is not None:
                return proc.exitcode
            tick()


def run_chains(chains: Sequence[Sequence[Callable]], workers: int) -> None:
    """Run each chain's steps in order, ``workers`` chains at a time. A step may return a
    list of more chains: they start then, beside the rest of its own (branches that need
    only what the step made). A failing chain stops only itself (the others finish and stay
    cached); the failures are raised together at the end. A signal stops everything at
    once."""
    errors: list[BaseException] = []
    futures: list = []
    lock = threading.Lock()

    def chain(steps):
        for step in steps:
            check_stop()
            branches = step()
            if isinstance(branches, list):
                with lock:
                    futures.extend(pool.submit(chain, b) for b in branches)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures.extend(pool.submit(chain, c) for c in chains)
        done = 0
        try:
            # a chain adds its branches before it ends, so once every future so far has
            # ended, none is left to add one
            while done < len(futures):
                with lock:
                    future = futures[done]
                done += 1
                try:
                    future.result()
                except Interrupted:
                    raise
                except Exception as err:  # noqa: BLE001  collected, re-raised below
                    errors.append(err)
        except BaseException:
            STOP.set()
            with lock:
                for future in futures:
                    future.cancel()
            stop_children()
            raise
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise RuntimeError(f"{len(errors)} jobs failed:\n" + "\n".join(map(str, errors)))


@contextlib.contextmanager
def signals_stop():
    """Within the block, SIGINT and SIGTERM stop every child and raise Interrupted in the
    main thread (only there can handlers be installed; elsewhere this does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if STOP.is_set():
            return  # already stopping
        STOP.set()
        STOPPED_BY["signal"] = signum
        log.warning("%s: stopping every job", signal.Signals(signum).name)
        stop_children()
        raise Interrupted(f"stopped by {signal.Signals(signum).name}")

    STOPPED_BY.clear()
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        STOP.clear()
