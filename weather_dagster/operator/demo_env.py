"""What the demo leaves behind for the operator's commands, and the lock that keeps one demo per out dir.

The demo's Dagster processes run with ``WEATHER_*`` settings only ``demo.py`` knows (the loopback URLs
of its data server and fleet, the SQLite database, hindcast days). It writes them to
``<out>/weather.env`` so ``weather-dagster ui`` / ``explain`` / the actions open the same instance and
database with nothing copied by hand. The file holds ``WEATHER_*`` lines only, so it is read through
the validated ``Settings`` (``_env_file``) like the environment itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
from collections.abc import Iterator
from pathlib import Path

from weather_dagster.settings import Settings, load_settings

ENV_FILE = "weather.env"
DAGSTER_HOME_DIR = "dagster_home"


class OperatorInputError(RuntimeError):
    """Input an operator gave that cannot work; the message says what to do instead."""


def write_demo_env(out: Path, env: dict[str, str]) -> Path:
    """Record the ``WEATHER_*`` settings of the demo's Dagster processes in ``<out>/weather.env``."""
    lines = [f"{key}={shlex.quote(value)}" for key, value in sorted(env.items()) if key.startswith("WEATHER_")]
    path = out / ENV_FILE
    path.write_text("# Written by `weather-dagster demo`; read by `weather-dagster ui/explain --demo`.\n")
    with path.open("a") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def demo_paths(demo_dir: str | Path) -> tuple[Path, Path]:
    """(env file, Dagster home) of a finished or running demo, or a message naming what to run first."""
    out = Path(demo_dir).resolve()
    env_file, home = out / ENV_FILE, out / DAGSTER_HOME_DIR
    if not env_file.is_file() or not (home / "dagster.yaml").is_file():
        raise OperatorInputError(f"no demo instance in {out}: run `make demo` (or `weather-dagster demo --out {out}`)")
    return env_file, home


def demo_settings(demo_dir: str | Path) -> Settings:
    env_file, _ = demo_paths(demo_dir)
    return load_settings(_env_file=str(env_file))


def demo_process_env(demo_dir: str | Path) -> dict[str, str]:
    """The environment of a Dagster process on the demo's instance: ours minus WEATHER_*, plus the file's."""
    env_file, home = demo_paths(demo_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEATHER_")}
    for line in env_file.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    env["DAGSTER_HOME"] = str(home)
    return env


def lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


def demo_running(out: Path) -> int | None:
    """The pid of the demo holding ``out``'s lock, or None when no demo runs there."""
    path = lock_path(out.resolve())
    if not path.exists():
        return None
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            text = handle.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


@contextlib.contextmanager
def demo_lock(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock for the whole demo: a second demo would delete the first one's directory.

    ``flock`` is released by the kernel when the process dies, so a killed demo never leaves a stale lock.
    """
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "?"
            raise OperatorInputError(
                f"a demo is already running in {out} (pid {pid}): wait for it to end, stop it with "
                f"`kill -INT {pid}`, or start this one elsewhere with `weather-dagster demo --out OTHER_DIR`"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
