"""``make demo``: one whole hindcast round through Dagster, offline, on loopback.

It starts the synthetic data server and a fleet of demo miners of mixed behaviours, then a Dagster
daemon on embedded SQLite storage; opens the round with a real run; lets the sensors drive every
miner through query, poll, manifest freeze, Day1 and all ERA5 leads; shows progress; and ends with
a ranked table and PNG plots. Everything it starts, it stops (also on Ctrl-C or a failure).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from weather_dagster.core.interrupts import interrupted_by_signals

REPO = Path(__file__).resolve().parents[1]
BEHAVIOURS = {
    10: "gfs_copy",
    11: "offline",
    12: "nan_injection",
    13: "slow",
    14: "flaky_5xx",
    15: "chunk_swapped_after_freeze",
}
DAGSTER_YAML = """\
storage:
  sqlite:
    base_dir: {home}
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
run_launcher:
  module: weather_dagster.dagster_defs.launcher
  class: ForkingRunLauncher
concurrency:
  runs:
    max_concurrent_runs: 2
  pools:
    default_limit: 1
# A run whose process died (SIGKILL, OOM) is marked failed by its code server; its pool slot is only
# given back by this sweep, and until then every later scoring run stays queued behind it.
run_monitoring:
  enabled: true
  start_timeout_seconds: 120
  max_resume_run_attempts: 0
  poll_interval_seconds: 5
  free_slots_after_run_end_seconds: 5
telemetry:
  enabled: false
"""


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


class Processes:
    """Child process groups, always stopped: SIGINT, a bounded wait, then SIGKILL."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
        handle = log.open("w")
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        self.children.append((name, proc))
        return proc

    def stop_all(self) -> None:
        # A second Ctrl-C (or SIGTERM) must not interrupt the clean-up half-way and leave servers behind.
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._stop_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop_all(self) -> None:
        for _name, proc in reversed(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + 20
        for _name, proc in reversed(self.children):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.children.clear()


def _wait_for_lines(log: Path, prefix: str, count: int, proc: subprocess.Popen, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line.strip() for line in log.read_text().splitlines() if prefix in line]
        if len(lines) >= count:
            return lines
        if proc.poll() is not None:
            raise RuntimeError(f"{log.name}: process exited early:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    raise TimeoutError(f"{log.name}: no '{prefix}' lines after {timeout:.0f} s:\n{log.read_text()[-2000:]}")


def _env_from(lines: list[str]) -> dict[str, str]:
    env = {}
    for line in lines:
        key, _, value = line.removeprefix("export ").partition("=")
        env[key.strip()] = value.strip().strip("'")
    return env


def _progress(engine: sa.Engine) -> tuple[str, str]:
    from weather_dagster.db.schema import forecast_runs, forecast_steps, miner_responses

    with engine.connect() as conn:
        status = conn.execute(sa.select(forecast_runs.c.status).order_by(forecast_runs.c.id.desc())).scalar()
        miners = Counter(conn.execute(sa.select(miner_responses.c.status)).scalars())
        leads = conn.execute(
            sa.select(sa.func.count()).where(
                forecast_steps.c.step_name == "era5", forecast_steps.c.status == "succeeded"
            )
        ).scalar()
    summary = ", ".join(f"{k} {v}" for k, v in sorted(miners.items()))
    return status or "(no round yet)", f"round {status or '-'} | miners: {summary or '-'} | ERA5 leads scored: {leads}"


def _init_instance(home: Path) -> None:
    """Create the instance's SQLite storage once, up front.

    The daemon and ``dagster job launch`` started right after it would otherwise both create the
    tables at the same time, and the loser dies with "table secondary_indexes already exists".
    """
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs_count()


@contextlib.contextmanager
def demo_environment(
    out: Path,
    miners: int,
    grid: float,
    init: datetime,
    *,
    era5_days: int = 11,
    behaviours: dict[int, str] | None = None,
) -> Iterator[tuple[dict[str, str], Processes]]:
    """Synthetic data server and demo fleet; yields the WEATHER_* env for Dagster processes.

    ``era5_days`` bounds the ERA5 truth served after ``init`` (0: no lead is ever ready, so a round
    stops after Day1); ``behaviours`` maps uids to misbehaviours (default: the demo's mix).
    """
    behaviours = BEHAVIOURS if behaviours is None else behaviours
    procs = Processes()
    try:
        data = out / "data"
        home = out / "dagster_home"
        home.mkdir(parents=True)
        (home / "dagster.yaml").write_text(DAGSTER_YAML.format(home=home))
        _init_instance(home)
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("WEATHER_")}
        base_env.update(WEATHER_DATA_DIR=str(data), PYTHONUNBUFFERED="1")
        print(f"[demo] synthetic GFS / ERA5 / climatology at {grid} deg on loopback ...", flush=True)
        synthetic_log = out / "synthetic.log"
        proc = procs.start(
            "synthetic",
            [
                _bin("weather-dagster"),
                "synthetic",
                "serve",
                "--dir",
                str(out / "synthetic"),
                "--grid",
                str(grid),
                "--start",
                init.strftime("%Y-%m-%d"),
                "--days",
                str(era5_days),
                "--analysis-days",
                "2",
                "--port",
                "0",  # ephemeral: two rounds (or a demo and a test) on one machine must not collide
            ],
            base_env,
            synthetic_log,
        )
        reference_env = _env_from(_wait_for_lines(synthetic_log, "WEATHER_REFERENCE__", 4, proc, 600))
        print(f"[demo] {miners} demo miners (behaviours: {json.dumps(behaviours)}) ...", flush=True)
        fleet_log = out / "fleet.log"
        behaviour_args = [
            arg for uid, name in behaviours.items() if uid < miners for arg in ("--behaviour", f"{uid}={name}")
        ]
        proc = procs.start(
            "fleet",
            [
                _bin("weather-dagster"),
                "miners",
                "serve",
                "--count",
                str(miners),
                "--grid-deg",
                str(grid),
                "--skill",
                "0.9",
                "--skill-spread",
                "0.6",
                *behaviour_args,
            ],
            base_env,
            fleet_log,
        )
        fleet_env = _env_from(_wait_for_lines(fleet_log, "export WEATHER_", 3, proc, 120))
        hindcast_days = (datetime.now(UTC).date() - init.date()).days
        env = {
            **base_env,
            **reference_env,
            **fleet_env,
            "DAGSTER_HOME": str(home),
            "WEATHER_DATABASE_URL": f"sqlite:///{data / 'weather.db'}",
            "WEATHER_TEST_MODE": "true",
            "WEATHER_HINDCAST_DAYS": str(hindcast_days),
            "WEATHER_ROUND__SENSOR_INTERVAL_S": "5",
            "WEATHER_ROUND__TRIGGER_JITTER_MAX_MINUTES": "0",
            "WEATHER_MINERS__DEMO_GRID_DEG": str(grid),
        }
        yield env, procs
    finally:
        procs.stop_all()


def launch_round(env: dict[str, str], date: str, timeout_s: float = 300) -> subprocess.CompletedProcess:
    """Open the round for ``date`` with a real run of ``open_round_job`` (the daemon then drives it)."""
    cmd = [_bin("dagster"), "job", "launch", "-w", str(REPO / "workspace.yaml"), "-j", "open_round_job"]
    cmd += ["--tags", json.dumps({"dagster/partition": date})]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout_s)


def run_demo(args: argparse.Namespace) -> int:
    """One demo per out dir (the lock), a message instead of a traceback on Ctrl-C; nothing left running."""
    from weather_dagster.operator.demo_env import demo_lock

    out = Path(args.out).resolve()
    try:
        with interrupted_by_signals(), demo_lock(out):
            return _run_demo(args, out)
    except KeyboardInterrupt:
        print(
            f"\n[demo] interrupted: every process the demo started is stopped; its logs are in {out}. "
            "Run `make demo` again to start over.",
            file=sys.stderr,
        )
        return 130


def _run_demo(args: argparse.Namespace, out: Path) -> int:
    from weather_dagster.db.engine import make_engine
    from weather_dagster.operator.demo_env import write_demo_env
    from weather_dagster.stats.report import ranked_miners, ranked_table, write_plots

    started = time.monotonic()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    init = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=args.hindcast_days)
    date = init.strftime("%Y-%m-%d")
    with demo_environment(out, args.miners, args.grid, init) as (env, procs):
        write_demo_env(out, env)
        print(f"[demo] Dagster daemon (SQLite storage in {env['DAGSTER_HOME']}) ...", flush=True)
        procs.start(
            "daemon", [_bin("dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")], env, out / "daemon.log"
        )
        print(f"[demo] opening the round for {date} 00Z (hindcast {env['WEATHER_HINDCAST_DAYS']} days) ...", flush=True)
        launch = launch_round(env, date)
        if launch.returncode != 0:
            print(launch.stdout[-2000:], launch.stderr[-4000:], file=sys.stderr)
            return 1
        engine = make_engine(env["WEATHER_DATABASE_URL"])
        last, status = "", ""
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(sa.exc.OperationalError):
                status, line = _progress(engine)
                if line != last:
                    print(f"[demo {time.monotonic() - started:6.0f} s] {line}", flush=True)
                    last = line
            if status in ("completed", "expired", "error"):
                break
            time.sleep(2)
        with engine.connect() as conn:  # closed at once: an open SQLite transaction would lock the report out
            run_id = conn.execute(sa.text("select max(id) from weather_forecast_runs")).scalar()
        if run_id is None:
            print("[demo] no round was created: see daemon.log", file=sys.stderr)
            return 1
        print()
        print(ranked_table(ranked_miners(engine, run_id)))
        plots = write_plots(engine, run_id, out / "plots")
        print()
        for path in plots:
            print(f"[demo] plot: {path}")
        print(f"[demo] round {status} in {time.monotonic() - started:.0f} s; logs in {out}")
        print(f"[demo] browse it: `make ui` (Dagster UI); `weather-dagster explain --demo {out} --round {date}`")
        engine.dispose()
        from weather_dagster.api.demo import show_page

        show_page(env["WEATHER_DATABASE_URL"], serve=args.serve, stop=procs.stop_all)
        return 0 if status == "completed" else 1


def add_demo_command(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="run one offline hindcast round end to end through Dagster")
    parser.add_argument("--miners", type=int, default=16)
    parser.add_argument("--grid", type=float, default=2.0, help="grid of truth and forecasts, degrees")
    parser.add_argument("--hindcast-days", type=int, default=14)
    parser.add_argument("--timeout", type=float, default=900, help="give up after this many seconds")
    parser.add_argument("--out", default="out/demo")
    parser.add_argument("--serve", action="store_true", help="then serve the API and page until Ctrl-C")
    parser.set_defaults(handler=run_demo)
