"""A small real round for fault tests: the demo's synthetic data, fleet and Dagster daemon, made fast.

Four well-behaved miners, a 5-degree grid, ERA5 leads 24 h and 48 h, sensors every 5 s, and the retry
timing spelled out (test mode scales every backoff by ``TIME_SCALE``), so a round completes in about
two minutes and a step that fails is tried again within seconds. Everything started is stopped by the
context manager, also when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from weather_dagster.db.engine import make_engine
from weather_dagster.demo import REPO, Processes, _bin, demo_environment, launch_round

MINERS = 4
GRID_DEG = 5.0
# Explicit timing of the recovery paths under test (WEATHER_TEST_MODE scales backoffs by TIME_SCALE):
# a failed Day1 attempt is due again after 300 s * 0.01 = 3 s, an ERA5 one after 3600 s * 0.01 = 36 s.
TIMING_ENV = {
    "WEATHER_SCORING__ERA5_LEAD_HOURS": "[24,48]",
    "WEATHER_ROUND__SENSOR_INTERVAL_S": "5",
    "WEATHER_RETRY__TEST_MODE_TIME_SCALE": "0.01",
    "WEATHER_RETRY__DAY1_BACKOFF_S": "[300]",
    "WEATHER_RETRY__DAY1_MAX_ATTEMPTS": "3",
    "WEATHER_RETRY__ERA5_BACKOFF_S": "[3600]",
    # Miner HTTP steps hold a lease: one left in_progress by a dead worker is claimable after 60 s.
    "WEATHER_RETRY__STEP_LEASE_S": "60",
}
ROUND_TIMEOUT_S = 300
TERMINAL = ("completed", "expired", "error")


@dataclass
class SmallRound:
    out: Path
    env: dict[str, str]
    procs: Processes
    init: datetime
    engine: sa.Engine

    @property
    def date(self) -> str:
        return self.init.strftime("%Y-%m-%d")

    def start_daemon(self) -> None:
        cmd = [_bin("dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")]
        self.procs.start("daemon", cmd, self.env, self.out / "daemon.log")

    def open_round(self) -> None:
        launch = launch_round(self.env, self.date, timeout_s=180)
        assert launch.returncode == 0, launch.stderr[-3000:]

    def instance(self):
        from dagster import DagsterInstance

        return DagsterInstance.from_config(self.env["DAGSTER_HOME"])

    def query(self, sql: str, **params: Any) -> list[sa.Row]:
        """Rows of a read; an error (the database restarting) reads as no rows."""
        try:
            with self.engine.connect() as conn:
                return conn.execute(sa.text(sql), params).all()
        except sa.exc.DBAPIError:
            return []

    def round_status(self) -> str | None:
        rows = self.query("select status from weather_forecast_runs order by id desc limit 1")
        return rows[0][0] if rows else None

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            self._check_daemon()
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; logs in {self.out}\n{self.tail()}")

    def wait_completed(self, timeout: float = ROUND_TIMEOUT_S) -> str:
        status = self.wait(lambda: self.round_status() in TERMINAL and self.round_status(), timeout, "round end", 1.0)
        return status

    def run_keys(self) -> list[str]:
        """The run key of every run the sensors launched (Dagster launches each key at most once)."""
        with self.instance() as instance:
            runs = [record.dagster_run for record in instance.get_run_records()]
        return [run.tags["dagster/run_key"] for run in runs if "dagster/run_key" in run.tags]

    def _check_daemon(self) -> None:
        for name, proc in self.procs.children:
            if name == "daemon" and proc.poll() is not None:
                raise AssertionError(f"dagster-daemon exited ({proc.returncode}):\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        log = self.out / "daemon.log"
        return log.read_text()[-chars:] if log.exists() else ""


@contextlib.contextmanager
def small_round(out: Path, *, database_url: str | None = None) -> Iterator[SmallRound]:
    """The environment of a small round (daemon not started yet); always torn down."""
    out.mkdir(parents=True, exist_ok=True)
    init = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=14)
    with demo_environment(out, MINERS, GRID_DEG, init) as (env, procs):
        env.update(TIMING_ENV)
        if database_url:
            env["WEATHER_DATABASE_URL"] = database_url
        engine = make_engine(env["WEATHER_DATABASE_URL"])
        try:
            yield SmallRound(out, env, procs, init, engine)
        finally:
            engine.dispose()


# -- scores ---------------------------------------------------------------------------------------

SCORE_VALUES = "score_type, lead_hours, variable, score, metrics"
COMPONENT_VALUES = (
    "score_type, lead_hours, variable, pressure_level, rmse, mse, acc, skill_score, bias, mae, "
    "pattern_correlation, clone_distance, clone_penalty, checks_passed, variable_weight"
)


def final_scores(engine: sa.Engine) -> dict[str, dict[tuple, tuple]]:
    """Every score of the (only) round by natural key (uid, type, lead, variable[, level]), without timings."""
    result: dict[str, dict[tuple, tuple]] = {}
    with engine.connect() as conn:
        for table, columns, width in (
            ("weather_miner_scores", SCORE_VALUES, 3),
            ("weather_forecast_component_scores", COMPONENT_VALUES, 4),
        ):
            rows = conn.execute(sa.text(f"select miner_uid, {columns} from {table}")).all()
            by_key: dict[tuple, tuple] = {}
            for row in rows:
                key, values = tuple(row[: width + 1]), tuple(_plain(v) for v in row[width + 1 :])
                assert key not in by_key, f"{table}: duplicate row for {key}"
                by_key[key] = values
            result[table] = by_key
    return result


def duplicate_keys(engine: sa.Engine) -> dict[str, list[sa.Row]]:
    """Natural keys with more than one row (must be none): scores, components and steps."""
    checks = {
        "weather_miner_scores": "run_id, miner_uid, score_type, lead_hours, variable",
        "weather_forecast_component_scores": "run_id, miner_uid, score_type, lead_hours, variable, pressure_level",
        "weather_forecast_steps": "run_id, miner_uid, step_name, substep, lead_hours",
        "weather_miner_responses": "run_id, miner_uid",
    }
    found = {}
    with engine.connect() as conn:
        for table, key in checks.items():
            found[table] = conn.execute(
                sa.text(f"select {key}, count(*) from {table} group by {key} having count(*) > 1")
            ).all()
    return found


def _plain(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        return json.loads(value)  # JSON columns come back as text from raw SQL on SQLite
    return value


# -- killing a run's processes ----------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def run_worker_pids(instance, run_id: str) -> list[int]:
    """The run's own processes: the run worker (it logs RUN_START) and its step processes (STEP_START),
    with their descendants. Read from the pids Dagster stamps on every event, never guessed from names."""
    from dagster import DagsterEventType

    wanted = {DagsterEventType.RUN_START, DagsterEventType.STEP_START}
    events = [entry.dagster_event for entry in instance.all_logs(run_id) if entry.is_dagster_event]
    roots = {event.pid for event in events if event.event_type in wanted and event.pid}
    pids, todo = [], sorted(roots)
    while todo:
        pid = todo.pop()
        if pid in pids or pid == os.getpid():
            continue
        pids.append(pid)
        todo.extend(_children(pid))
    return pids


def sigkill(pids: list[int]) -> list[int]:
    killed = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed
