"""``ForkingRunLauncher``: each run forked from a process that already imported the code location.

Dagster's default launcher asks the code server to start every run in a *spawned* process, which
imports dagster, the code location and then the scoring stack (numba, cfgrib, xarray) all over again:
about 2.5 s of CPU a run on this project, more than a small scoring batch itself. This launcher keeps one
preloaded process (:mod:`~weather_dagster.dagster_defs.run_forker`) per launching process (the daemon,
the webserver) and forks each run from it, so a run starts with every import done.

What stays as with the default launcher: the run executes as Dagster's own run worker does, in a process
of its own on the launching machine, and a crash marks the run failed at once. What it adds: run
monitoring can check the worker (``host:pid:start`` in the run's ``weather/run_worker`` tag).
Anything it cannot fork (a run of another code location or interpreter, a forker that fails to start)
is launched by the default launcher instead, with an engine event saying why. Restart the daemon and
webserver after upgrading the package: the forker keeps the code it imported when it started.

Set in ``dagster.yaml``::

    run_launcher:
      module: weather_dagster.dagster_defs.launcher
      class: ForkingRunLauncher
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from dagster import Array, Field
from dagster import _check as check
from dagster._core.events import EngineEventData
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, LaunchRunContext, WorkerStatus
from dagster._serdes import ConfigurableClassData, serialize_value

from weather_dagster.dagster_defs.run_forker import READY, process_start_ticks

WORKER_TAG = "weather/run_worker"
# The code location and the modules its scoring runs import on first use.
DEFAULT_PRELOAD = (
    "weather_dagster.definitions:defs",
    "weather_dagster.scoring.batch",
    "weather_dagster.scoring.service",
    "weather_dagster.scoring.live_inputs",
    "weather_dagster.miners.opening",
)
START_TIMEOUT_S = 300.0
ANSWER_TIMEOUT_S = 30.0


class ForkerError(RuntimeError):
    pass


class ForkingRunLauncher(DefaultRunLauncher):
    def __init__(self, inst_data: ConfigurableClassData | None = None, preload: Sequence[str] = DEFAULT_PRELOAD):
        super().__init__(inst_data=inst_data)
        self._preload = tuple(preload)
        self._modules = {target.partition(":")[0] for target in self._preload}
        self._forker: subprocess.Popen | None = None
        self._lock = threading.Lock()

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {
            "preload": Field(
                Array(str),
                is_required=False,
                default_value=list(DEFAULT_PRELOAD),
                description="Modules the forker imports (module:attribute also builds that Definitions).",
            )
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]):
        return cls(inst_data=inst_data, preload=config_value.get("preload", DEFAULT_PRELOAD))

    # -- launching ---------------------------------------------------------------------------------

    def _forkable(self, context: LaunchRunContext) -> str | None:
        """Why this run cannot be forked from the preloaded process, or None when it can."""
        origin = context.job_code_origin
        if origin is None:
            return "the run has no code origin"
        repository = origin.repository_origin
        module = getattr(repository.code_pointer, "module", None)
        if module not in self._modules:
            return f"its code location ({repository.code_pointer.describe()}) is not preloaded"
        if repository.executable_path != sys.executable:
            return f"its code location runs on another interpreter ({repository.executable_path})"
        return None

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        reason = self._forkable(context)
        if reason is None:
            try:
                answer = self._fork(run.run_id)
            except ForkerError as exc:
                reason = str(exc)
            else:
                self._instance.add_run_tags(run.run_id, {WORKER_TAG: answer["worker"]})
                self._instance.report_engine_event(
                    f"Run forked from the preloaded run process (pid {answer['pid']}).",
                    run,
                    EngineEventData.in_process(answer["pid"]),
                    cls=self.__class__,
                )
                self._run_ids.add(run.run_id)
                return
        self._instance.report_engine_event(f"Launching through the code server: {reason}.", run, cls=self.__class__)
        super().launch_run(context)

    def _fork(self, run_id: str) -> dict[str, Any]:
        request = {"run_id": run_id, "instance_ref": serialize_value(self._instance.get_ref())}
        with self._lock:
            for attempt in (1, 2):  # a forker that died since the last run is replaced once
                forker = self._running_forker()
                try:
                    forker.stdin.write(json.dumps(request) + "\n")
                    forker.stdin.flush()
                    answer = _read_answer(forker, ANSWER_TIMEOUT_S)
                except (OSError, ForkerError):
                    self._stop_forker()
                    if attempt == 2:
                        raise ForkerError("the preloaded run process stopped answering") from None
                    continue
                if "error" in answer:
                    raise ForkerError(f"the preloaded run process refused: {answer['error']}")
                if not answer.get("worker"):
                    raise ForkerError(f"the forked run process {answer.get('pid')} exited at once")
                return answer
        raise AssertionError("unreachable")

    def _running_forker(self) -> subprocess.Popen:
        if self._forker is not None and self._forker.poll() is None:
            return self._forker
        cmd = [sys.executable, "-m", "weather_dagster.dagster_defs.run_forker", *self._preload]
        forker = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        try:
            answer = _read_answer(forker, START_TIMEOUT_S)
        except ForkerError:
            forker.kill()
            forker.wait()
            raise
        if answer.get("status") != READY:
            forker.wait()
            raise ForkerError(f"the preloaded run process did not start: {answer.get('error', answer)}")
        self._forker = forker
        return forker

    def _stop_forker(self) -> None:
        forker, self._forker = self._forker, None
        if forker is not None and forker.poll() is None:
            forker.stdin.close()  # it waits for its runs, then exits

    def dispose(self) -> None:
        with self._lock:
            self._stop_forker()
        super().dispose()

    # -- the runs it forked --------------------------------------------------------------------------

    def _worker(self, run) -> tuple[str, int, int] | None:
        worker = run.tags.get(WORKER_TAG)
        if not worker:
            return None
        host, pid, start = worker.rsplit(":", 2)
        return host, int(pid), int(start)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run) -> CheckRunHealthResult:
        worker = self._worker(run)
        if worker is None:  # launched by the code server, which watches its own run processes
            return CheckRunHealthResult(WorkerStatus.RUNNING, "launched by the code server")
        host, pid, start = worker
        if host != socket.gethostname():
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker on {host}, not checked from here")
        if process_start_ticks(pid) == start:
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker process {pid} is gone", run_worker_id=str(pid))

    def terminate(self, run_id: str) -> bool:
        import os
        import signal

        check.str_param(run_id, "run_id")
        run = self._instance.get_run_by_id(run_id)
        worker = self._worker(run) if run is not None else None
        if worker is None:
            return super().terminate(run_id)
        if run.is_finished:
            return False
        host, pid, start = worker
        self._instance.report_run_canceling(run)
        if host != socket.gethostname() or process_start_ticks(pid) != start:
            self._instance.report_engine_event(
                f"Run worker process {pid} on {host} cannot be signalled from here.", run, cls=self.__class__
            )
            return False
        os.kill(pid, signal.SIGINT)  # the run worker turns it into a cancellation at a safe point
        return True


def _read_answer(forker: subprocess.Popen, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ForkerError(f"the preloaded run process did not answer within {timeout_s:.0f} s")
        readable, _, _ = select.select([forker.stdout], [], [], left)
        if not readable:
            continue
        line = forker.stdout.readline()
        if not line:
            raise ForkerError(f"the preloaded run process exited (code {forker.wait()})")
        try:
            return json.loads(line)
        except ValueError as exc:
            raise ForkerError(f"the preloaded run process answered {line[:200]!r}") from exc
