"""Local services for the infrastructure tests: Redis, a Celery worker, the Dagster webserver.

Every process starts in its own session (process group) on 127.0.0.1 and an ephemeral port, and
:func:`stop_group` always ends it: SIGTERM/SIGINT first, SIGKILL to the whole group after a bounded
wait, so nothing a test started outlives it (Dagster code servers and Celery pool children included).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


class ServiceError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment for a child process: no inherited WEATHER_/DAGSTER_ settings, the venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEATHER_", "DAGSTER_"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["WEATHER_DATA_DIR"] = str(tmp_path / "data")
    env.update(extra)
    return env


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"{what}: process exited with {proc.returncode} before it was ready")
        if check():
            return
        time.sleep(0.2)
    raise ServiceError(f"{what}: not ready after {timeout_s:.0f} s")


def stop_group(proc: subprocess.Popen, first: signal.Signals = signal.SIGTERM, grace_s: float = 10.0) -> None:
    """Signal the process group, then SIGKILL whatever is left of it after ``grace_s``."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    if pgid is not None:
        with suppress(ProcessLookupError):
            os.killpg(pgid, first)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    if pgid is not None:
        # Children (code servers, pool workers) may outlive the leader: the group goes regardless.
        with suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    proc.wait(timeout=10)


def ancestors(pid: int) -> list[int]:
    """Parent chain of a live process, from /proc (Linux)."""
    chain = []
    while pid > 1:
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        chain.append(pid)
    return chain


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A throwaway Redis on loopback, not daemonized and without persistence; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError("redis-server not found: install it (apt-get install redis-server; .ci/run does)")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    cmd += ["--dir", str(workdir)]
    with open(workdir / "redis.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: _redis_ping(port), 15, "redis-server", proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_group(proc, grace_s=5)


@contextmanager
def celery_worker(
    env: dict[str, str], executor_config: dict, workdir: Path, concurrency: int, extra_args: tuple[str, ...] = ()
) -> Iterator[subprocess.Popen]:
    """``dagster-celery worker start`` with the executor's own config block; yields the worker process.

    The worker needs ``DAGSTER_HOME`` in ``env`` (dagster-celery writes its config module there).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config_yaml = workdir / "celery.yaml"
    config_yaml.write_text(yaml.safe_dump({"execution": {"config": executor_config}}))
    log_path = workdir / "worker.log"
    cmd = [
        str(VENV_BIN / "dagster-celery"),
        "worker",
        "start",
        "-A",
        "dagster_celery.app",
        "-y",
        str(config_yaml),
        "-n",
        "weather-test",
        "--",
        f"--concurrency={concurrency}",
        "--without-gossip",
        "--without-mingle",
        *extra_args,
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: b" ready." in log_path.read_bytes(), 90, "celery worker", proc)
        yield proc
    finally:
        stop_group(proc, grace_s=15)


def worker_log(workdir: Path) -> str:
    path = workdir / "worker.log"
    return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def execute_job(env: dict[str, str], module: str, job: str, timeout_s: float) -> tuple[int, int, str]:
    """``dagster job execute -m MODULE -j JOB`` as its own process, killed after ``timeout_s``.

    Returns (pid, return code, output); a run that does not finish in time fails with its output.
    """
    cmd = [str(VENV_BIN / "dagster"), "job", "execute", "-m", module, "-j", job]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        message = f"dagster job execute {job}: not finished after {timeout_s:.0f} s\n{output[-3000:]}"
        raise ServiceError(message) from None
    return proc.pid, proc.returncode, output


def instance_home(tmp_path: Path, config_text: str) -> Path:
    """A DAGSTER_HOME holding ``config_text`` as its dagster.yaml."""
    home = tmp_path / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(config_text)
    return home


def sqlite_instance_yaml(home: Path) -> str:
    """The repository's dagster.yaml with the home spelled out, for processes without DAGSTER_HOME."""
    text = (REPO / "dagster.yaml").read_text()
    return text.replace("base_dir:\n      env: DAGSTER_HOME", f"base_dir: '{home}'")
