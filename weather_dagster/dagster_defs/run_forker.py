"""The preloaded run process: imports the code location once, then forks one child per launched run.

Started by :class:`~weather_dagster.dagster_defs.launcher.ForkingRunLauncher` as
``python -m weather_dagster.dagster_defs.run_forker MODULE[:ATTRIBUTE] ...`` with a pipe on stdin and
stdout. It imports every module named (``MODULE:ATTRIBUTE`` also builds that ``Definitions``' repository,
which each run would otherwise rebuild), prints ``ready``, then reads one JSON request per line
(``{"run_id": ..., "instance_ref": ...}``) and answers with the child's pid and worker id.

Why a fork is safe here: the forker starts no Python thread, opens no database or socket and holds no
lock when it forks (it checks that the main thread is its only Python thread before each fork and
refuses otherwise), so the child starts as a clean copy with the imports done. The one native thread
numpy's OpenBLAS starts at import re-initialises itself in a forked child (``pthread_atfork``). The
child runs the run exactly as Dagster's own ``dagster api execute_run`` worker does, then exits.

The forker reaps its children. A child that died (a signal, an exit code other than 0) while its run
was not finished gets the run marked failed here, as Dagster's code server does for the runs it
spawns, so ``step_failure_sensor`` retries the steps it held even without run monitoring.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import socket
import sys
import threading
import traceback
from dataclasses import dataclass
from typing import TextIO

READY = "ready"


def worker_id(pid: int) -> str | None:
    """``host:pid:start`` of a live process (start in clock ticks after boot), so a reused pid never matches."""
    start = process_start_ticks(pid)
    return None if start is None else f"{socket.gethostname()}:{pid}:{start}"


def process_start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` from ``/proc``, or None when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass
class _Child:
    run_id: str
    instance_ref: str


def preload(targets: list[str]) -> None:
    """Import each module; for ``module:attribute`` also build the repository of that Definitions."""
    importlib.import_module("dagster._cli.api")
    for target in targets:
        module_name, _, attribute = target.partition(":")
        module = importlib.import_module(module_name)
        if attribute:
            getattr(module, attribute).get_repository_def()


def _run_child(request: dict, answers: TextIO) -> None:
    """In the forked child: run the run as ``dagster api execute_run`` would, then exit (never returns)."""
    code = 1
    try:
        # The pipes are the forker's: a child holding them would hide the forker's exit from the launcher.
        answers.close()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from dagster._cli.api import _execute_run_command_body
        from dagster._core.instance import DagsterInstance
        from dagster._serdes import deserialize_value
        from dagster._utils.interrupts import capture_interrupts

        ref = deserialize_value(request["instance_ref"])
        with capture_interrupts(), DagsterInstance.from_ref(ref) as instance:
            _execute_run_command_body(
                request["run_id"], instance, write_stream_fn=lambda _event: None, set_exit_code_on_failure=False
            )
        code = 0
    except BaseException:  # the child reports anything and exits; the forker marks the run
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _mark_dead_run(child: _Child, status: int) -> None:
    """A child that died before its run finished: the run is failed, with the reason, like a crash."""
    from dagster._core.instance import DagsterInstance
    from dagster._serdes import deserialize_value

    code = os.waitstatus_to_exitcode(status)
    how = f"signal {-code}" if code < 0 else f"exit code {code}"
    try:
        with DagsterInstance.from_ref(deserialize_value(child.instance_ref)) as instance:
            run = instance.get_run_by_id(child.run_id)
            if run is not None and not run.is_finished:
                instance.report_run_failed(run, f"The run worker process died ({how}) before the run finished.")
    except Exception:  # run monitoring is the second line; say why this one failed
        traceback.print_exc()


def _reap(children: dict[int, _Child], block: bool = False) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        child = children.pop(pid, None)
        if child is not None and status != 0:
            _mark_dead_run(child, status)


def _answer(answers: TextIO, payload: dict) -> None:
    answers.write(json.dumps(payload) + "\n")
    answers.flush()


def serve(stdin: TextIO, answers: TextIO) -> None:
    """Answer fork requests until the launcher closes the pipe, then wait for the runs still going."""
    children: dict[int, _Child] = {}
    while True:
        readable, _, _ = select.select([stdin], [], [], 1.0)
        _reap(children)
        if not readable:
            continue
        line = stdin.readline()
        if not line:
            break
        try:
            request = json.loads(line)
            run_id, instance_ref = str(request["run_id"]), str(request["instance_ref"])
        except (ValueError, KeyError, TypeError) as exc:
            _answer(answers, {"error": f"bad request: {exc}"})
            continue
        if threading.active_count() != 1:  # a fork would copy another thread's held locks
            _answer(answers, {"error": f"the forker has {threading.active_count()} threads; it forks only with one"})
            continue
        pid = os.fork()
        if pid == 0:
            _run_child({"run_id": run_id, "instance_ref": instance_ref}, answers)
        children[pid] = _Child(run_id, instance_ref)
        _answer(answers, {"run_id": run_id, "pid": pid, "worker": worker_id(pid)})
    _reap(children, block=True)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the runs; the forker outlives them
    # Answers get a descriptor of their own; whatever the code location prints goes to stderr (the log).
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    try:
        preload(argv)
    except Exception as exc:  # the launcher reads this line and falls back
        _answer(answers, {"error": f"preload failed: {type(exc).__name__}: {exc}"})
        return 1
    _answer(answers, {"status": READY, "pid": os.getpid()})
    serve(sys.stdin, answers)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
