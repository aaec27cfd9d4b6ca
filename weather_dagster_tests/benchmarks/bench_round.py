"""Benchmark: Day1 of a 255-miner round through a real Dagster daemon, timed from the database.

Set-up (not measured): the synthetic data server and 255 good demo miners (``demo_environment``),
a Dagster instance on SQLite, the daemon started and warm with ``round_sensor`` and
``round_schedule`` switched off, the round opened by a real ``open_round_job`` run that the daemon
launched (so its run launcher is warm, as all day in production), and every miner
queried, polled and frozen by the product's miner lifecycle (``bench_miners`` times that part). ERA5
truth is served for the init time only, so no ERA5 lead becomes ready: the round stops at Day1.

Measured: the sensor is switched on (t0, when every forecast is frozen and visible to a running
sensor). From then on only Dagster acts: sensor ticks request batched ``score_batch_job`` runs, the
daemon's run queue starts them, each scores its miners. Times come from the database:

- ``round_255_day1_s``: t0 to the last ``weather_miner_responses.day1_scored_at``;
- ``first_day1_s``: t0 to the first ``day1_scored_at``.

``dagster_overhead_share`` = (C_total - C_validator) / C_total over [t0, all runs finished], where
C_total is the CPU (user + system) of every Dagster process -- the daemon, the code server, the
preloaded run process and every run -- summed from /proc over the daemon's and the code server's
sessions, with exited children counted through their parents' cutime/cstime (plus, with
``--postgres``, the PostgreSQL server holding Dagster's storage), and C_validator is the CPU spent
inside the validator's scoring service calls, as measured by ``score_batch`` itself
(``time.process_time`` around each miner, reported as the ``validator_cpu_s`` output metadata).

The default is the production shape: one ``dagster code-server start`` (``workspace.server.yaml``) and
the ``ForkingRunLauncher``. ``--daemon-code-server`` and ``--default-launcher`` measure the shape before
(the daemon spawning its own code server, every run spawned by it); ``--postgres`` puts Dagster's
storage on PostgreSQL instead of SQLite files.

    python -m weather_dagster_tests.benchmarks.bench_round [--miners 255] [--grid 5.0] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from weather_dagster.demo import REPO, _bin, demo_environment

PARTITION_TAG = "dagster/partition"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SQLITE_STORAGE = """\
storage:
  sqlite:
    base_dir: {home}
"""
POSTGRES_STORAGE = """\
storage:
  postgres:
    postgres_url: {url}
"""
DAGSTER_YAML = """\
{storage}run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
{launcher}concurrency:
  runs:
    max_concurrent_runs: {max_runs}
  pools:
    default_limit: {pool_limit}
telemetry:
  enabled: false
"""
FORKING_LAUNCHER = """\
run_launcher:
  module: weather_dagster.dagster_defs.launcher
  class: ForkingRunLauncher
"""
WORKSPACE_YAML = """\
load_from:
  - grpc_server:
      host: 127.0.0.1
      port: {port}
      location_name: weather_dagster
"""


def session_cpu_s(sid: int) -> tuple[float, dict[str, float]]:
    """CPU seconds of every process in session ``sid``, and a split by process kind.

    utime + stime + cutime + cstime per live (or zombie) process counts each CPU second once: a
    reaped child's time moved into its parent's cutime when it was reaped.
    """
    total, kinds = 0.0, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[3]) != sid:
            continue
        cpu = sum(int(x) for x in fields[11:15]) / CLK_TCK
        total += cpu
        kind = (
            "code_server"
            if "grpc" in cmdline or "code-server" in cmdline
            else "daemon"
            if "dagster-daemon" in cmdline
            else "run"
        )
        kinds[kind] = kinds.get(kind, 0.0) + cpu
    return total, kinds


def tree_cpu_s(sids: list[int]) -> tuple[float, dict[str, float]]:
    """``session_cpu_s`` summed over the sessions of the Dagster processes (daemon, code server)."""
    total, kinds = 0.0, {}
    for sid in sids:
        cpu, split = session_cpu_s(sid)
        total += cpu
        for kind, value in split.items():
            kinds[kind] = kinds.get(kind, 0.0) + value
    return total, kinds


def start_code_server(procs, env: dict[str, str], out: Path):
    """The code location served by one long-lived ``dagster code-server start`` (the production shape).

    Returns the process and the workspace file pointing at it. The daemon then loads the location over
    gRPC instead of spawning its own server, which it replaces every 60 s (a new process importing the
    whole code location each time).
    """
    from weather_dagster_tests.support.services import free_port

    port = free_port()
    cmd = [_bin("dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(port)]
    cmd += ["-m", "weather_dagster.definitions", "-a", "defs", "--location-name", "weather_dagster"]
    proc = procs.start("code_server", cmd, env, out / "code_server.log")
    workspace = out / "workspace.server.yaml"
    workspace.write_text(WORKSPACE_YAML.format(port=port))
    check = [_bin("dagster"), "api", "grpc-health-check", "-p", str(port)]
    _wait(
        lambda: subprocess.run(check, env=env, capture_output=True, check=False).returncode == 0, 120, "the code server"
    )
    return proc, workspace


def _dagster(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(
        [_bin("dagster"), *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"dagster {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def freeze_all(run_id: int) -> int:
    """Subprocess entry: query, poll and freeze every miner of the round (settings from the env)."""
    from weather_dagster.db.engine import Database
    from weather_dagster.miners.keys import validator_keypair
    from weather_dagster.miners.lifecycle import run_until_settled
    from weather_dagster.settings import load_settings

    settings = load_settings()
    database = Database(settings.resolved_database_url)
    settled = asyncio.run(
        run_until_settled(settings, database.engine, run_id, validator_keypair(settings), max_wait_s=1800)
    )
    database.dispose()
    return 0 if settled else 1


def _counts(engine: sa.Engine) -> tuple[int, int, int]:
    from weather_dagster.db.schema import miner_responses as r

    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.count(r.c.manifest_frozen_at),
                sa.func.count(r.c.day1_scored_at),
            )
        ).one()
    return row[0], row[1], row[2]


def _wait(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def _runs(home: Path):
    """Every score_batch_job run: (record, validator CPU, event timestamps by type)."""
    from dagster import DagsterEventType, DagsterInstance, RunsFilter
    from dagster._core.instance.ref import InstanceRef

    instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    out = []
    for record in instance.get_run_records(filters=RunsFilter(job_name="score_batch_job")):
        cpu, op_cpu, stamps = 0.0, 0.0, {}
        for entry in instance.all_logs(record.dagster_run.run_id):
            event = entry.dagster_event
            if event is None:
                continue
            stamps.setdefault(event.event_type_value, entry.timestamp)
            if event.event_type == DagsterEventType.STEP_OUTPUT:
                meta = event.step_output_data.metadata
                if "validator_cpu_s" in meta:
                    cpu += float(meta["validator_cpu_s"].value)
                    op_cpu += float(meta["op_cpu_s"].value)
        out.append((record, cpu, op_cpu, stamps))
    active = instance.get_run_records(
        filters=RunsFilter(statuses=[s for s in _active_statuses()]),
    )
    instance.dispose()
    return out, active


def _opened(home: Path) -> bool:
    """The round-opening run succeeded (it failing is an error, not something to wait for)."""
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
    from dagster._core.instance.ref import InstanceRef

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        records = instance.get_run_records(filters=RunsFilter(job_name="open_round_job"))
    statuses = {record.dagster_run.status for record in records}
    if statuses & {DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}:
        raise RuntimeError("the open_round_job run failed: see the daemon log")
    return DagsterRunStatus.SUCCESS in statuses


def _active_statuses():
    from dagster import DagsterRunStatus

    return [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--miners", type=int, default=255)
    parser.add_argument("--grid", type=float, default=5.0)
    parser.add_argument("--max-runs", type=int, default=2, help="daemon's max_concurrent_runs")
    parser.add_argument("--pool-limit", type=int, default=2, help="concurrency pool limit (scoring)")
    parser.add_argument("--batch-size", type=int, default=128, help="WEATHER_ROUND__SCORING_BATCH_SIZE")
    parser.add_argument("--sensor-interval", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=1200)
    parser.add_argument(
        "--daemon-code-server",
        action="store_true",
        help="let the daemon spawn (and every 60 s replace) its own code server, as with workspace.yaml",
    )
    parser.add_argument(
        "--default-launcher", action="store_true", help="Dagster's default run launcher (each run spawned)"
    )
    parser.add_argument(
        "--postgres", action="store_true", help="Dagster's storage on a throwaway PostgreSQL (production)"
    )
    parser.add_argument("--keep", help="keep logs and databases in this directory")
    parser.add_argument("--freeze-run-id", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.freeze_run_id is not None:
        return freeze_all(args.freeze_run_id)
    if args.keep:
        return run(args, Path(args.keep).resolve())
    with tempfile.TemporaryDirectory(prefix="bench_round_") as tmp:
        return run(args, Path(tmp))


def run(args: argparse.Namespace, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    init = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    postgres = _postgres() if args.postgres else None
    try:
        return _run(args, out, init, postgres)
    finally:
        if postgres is not None:
            postgres.stop()


def _postgres():
    from weather_dagster_tests.support.pg_server import PostgresServer

    print("[bench] starting PostgreSQL for Dagster's storage ...", flush=True)
    return PostgresServer().start()  # its own directory: the server may run as another user


def postgres_cpu_s(server) -> float:
    """CPU of the PostgreSQL server: the postmaster (with its reaped backends) and its live children."""
    postmaster = int((server.base_dir / "data" / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(entry) == postmaster or int(fields[1]) == postmaster:
            total += sum(int(x) for x in fields[11:15]) / CLK_TCK
    return total


def _run(args: argparse.Namespace, out: Path, init: datetime, postgres) -> int:
    from weather_dagster.db.engine import make_engine

    date = init.strftime("%Y-%m-%d")
    with demo_environment(out, args.miners, args.grid, init, era5_days=0, behaviours={}) as (env, procs):
        home = Path(env["DAGSTER_HOME"])
        (home / "dagster.yaml").write_text(
            DAGSTER_YAML.format(
                storage=POSTGRES_STORAGE.format(url=postgres.create_database("dagster"))
                if postgres
                else SQLITE_STORAGE.format(home=home),
                max_runs=args.max_runs,
                pool_limit=args.pool_limit,
                launcher="" if args.default_launcher else FORKING_LAUNCHER,
            )
        )
        env["WEATHER_ROUND__SENSOR_INTERVAL_S"] = str(args.sensor_interval)
        if args.batch_size:
            env["WEATHER_ROUND__SCORING_BATCH_SIZE"] = str(args.batch_size)
        sessions = []
        if args.daemon_code_server:
            workspace = ["-w", str(REPO / "workspace.yaml")]
        else:
            print("[bench] starting the code server ...", flush=True)
            code_server, workspace_file = start_code_server(procs, env, out)
            sessions.append(code_server.pid)
            workspace = ["-w", str(workspace_file)]
        print("[bench] switching round_sensor and round_schedule off ...", flush=True)
        _dagster(["sensor", "stop", "round_sensor", *workspace], env)
        _dagster(["schedule", "stop", "round_schedule", *workspace], env)
        daemon = procs.start("daemon", [_bin("dagster-daemon"), "run", *workspace], env, out / "daemon.log")
        sessions.append(daemon.pid)
        # Through the daemon's run queue and launcher, as the schedule would: its launcher is warm after.
        print(f"[bench] opening round {date} with an open_round_job run ...", flush=True)
        tags = json.dumps({PARTITION_TAG: date})
        _dagster(["job", "launch", *workspace, "-j", "open_round_job", "--tags", tags], env)
        _wait(lambda: _opened(home), 300, "the open_round_job run to succeed")
        engine = make_engine(env["WEATHER_DATABASE_URL"])
        with engine.connect() as conn:
            run_id = conn.execute(sa.text("select max(id) from weather_forecast_runs")).scalar()
        print(f"[bench] freezing {args.miners} forecasts (miner lifecycle) ...", flush=True)
        started = time.monotonic()
        freeze = [sys.executable, "-m", "weather_dagster_tests.benchmarks.bench_round", "--freeze-run-id", str(run_id)]
        subprocess.run(freeze, env=env, cwd=REPO, check=True, timeout=1800, stdout=subprocess.DEVNULL)
        total, frozen, _ = _counts(engine)
        print(f"[bench] {frozen}/{total} frozen in {time.monotonic() - started:.0f} s", flush=True)
        if frozen != args.miners:
            print("[bench] not every forecast froze", file=sys.stderr)
            return 1
        time.sleep(2 * args.sensor_interval)  # the warm daemon idles; its baseline CPU is taken below
        cpu0, kinds0 = tree_cpu_s(sessions)
        pg0 = postgres_cpu_s(postgres) if postgres else 0.0
        t0 = datetime.now(UTC)
        _dagster(["sensor", "start", "round_sensor", *workspace], env)
        print("[bench] round_sensor on: Day1 through Dagster ...", flush=True)
        _wait(lambda: _counts(engine)[2] == args.miners, args.timeout, "every Day1 score")
        runs, _ = _wait(lambda: (lambda r: r if not r[1] else None)(_runs(home)), 300, "runs to finish", 1.0)
        cpu1, kinds = tree_cpu_s(sessions)
        pg_cpu = postgres_cpu_s(postgres) - pg0 if postgres else 0.0
        from weather_dagster.db.schema import miner_responses as r

        with engine.connect() as conn:
            first, last, last_frozen = conn.execute(
                sa.select(
                    sa.func.min(r.c.day1_scored_at),
                    sa.func.max(r.c.day1_scored_at),
                    sa.func.max(r.c.manifest_frozen_at),
                )
            ).one()
        engine.dispose()
    as_utc = lambda d: d if d.tzinfo else d.replace(tzinfo=UTC)  # noqa: E731
    total_cpu = cpu1 - cpu0 + pg_cpu  # Dagster's storage server is Dagster's cost too
    validator_cpu = sum(run[1] for run in runs)
    op_cpu = sum(run[2] for run in runs)
    print(f"miners: {args.miners}")
    print(f"grid_deg: {args.grid}")
    print(f"dagster_storage: {'postgresql' if postgres else 'sqlite'}")
    print(f"run_launcher: {'DefaultRunLauncher' if args.default_launcher else 'ForkingRunLauncher'}")
    print(f"code_server: {'spawned by the daemon' if args.daemon_code_server else 'dagster code-server start'}")
    print(f"scoring_runs: {len(runs)}")
    print(f"t0_after_last_freeze_s: {(t0 - as_utc(last_frozen)).total_seconds():.1f}")
    print(f"round_{args.miners}_day1_s: {(as_utc(last) - t0).total_seconds():.1f}")
    print(f"first_day1_s: {(as_utc(first) - t0).total_seconds():.1f}")
    print(f"dagster_tree_cpu_s: {total_cpu:.1f}")
    print(f"validator_scoring_cpu_s: {validator_cpu:.1f}")
    print(f"op_cpu_s: {op_cpu:.1f}  (whole score_batch ops: scoring + per-miner Dagster events)")
    print(f"daemon_tree_cpu_outside_ops_s: {total_cpu - op_cpu:.1f}  (daemon, sensors, code server, run start/stop)")
    print(f"dagster_overhead_share: {(total_cpu - validator_cpu) / total_cpu:.3f}")
    print(
        "dagster_overhead_share_definition: (CPU of the daemon's process tree over [t0, runs finished]"
        " - CPU inside the scoring service calls) / CPU of the daemon's process tree"
    )
    for kind, cpu in sorted(kinds.items()):
        print(f"tree_cpu_{kind}_lifetime_s: {cpu:.1f}")
    if postgres:
        print(f"tree_cpu_postgres_window_s: {pg_cpu:.1f}")
    for kind, cpu in sorted(kinds.items()):  # over [t0, runs finished]: run processes start after t0
        print(f"tree_cpu_{kind}_window_s: {cpu - kinds0.get(kind, 0.0):.1f}")
    run_window = kinds.get("run", 0.0) - kinds0.get("run", 0.0)
    print(f"run_cpu_outside_ops_per_run_s: {(run_window - op_cpu) / max(1, len(runs)):.2f}  (start, stop, events)")
    for record, cpu, _, stamps in sorted(runs, key=lambda x: x[0].create_timestamp):
        created = record.create_timestamp.timestamp()
        s = {k: v - created for k, v in stamps.items()}
        print(
            f"run {record.dagster_run.run_id[:8]}: queued->start {s.get('PIPELINE_START', -1):.1f} s, "
            f"step start {s.get('STEP_START', -1):.1f} s, step end {s.get('STEP_SUCCESS', -1):.1f} s, "
            f"run end {s.get('PIPELINE_SUCCESS', -1):.1f} s, validator cpu {cpu:.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
