"""Benchmark: what Dagster itself costs per run and per sensor tick.

- ``import_definitions_cpu_s``: CPU of ``python -c 'import weather_dagster.definitions'`` (the code
  location load every run process and the code server pay).
- ``run_start_cpu_s``: CPU of one launched run of a trivial batch -- ``dagster job execute`` of
  ``score_batch_job`` with no miners, on a SQLite instance and product database: the process loads
  the code location, runs the op on the job's executor (a step process, if any, is counted through
  the parent's ``RUSAGE_CHILDREN``) and exits.
- ``sensor_tick_cpu_ms``: CPU of one ``round_sensor`` evaluation (in this process, after a warm-up
  tick) on a product database holding 255 miners x 15 rounds of history, every round still open
  and waiting for ERA5 leads, with the steps of every lead scored so far.

    python -m weather_dagster_tests.benchmarks.bench_dagster [--miners 255] [--rounds 15] [--ticks 5]

Run it with ``PYTHONPATH`` pointing at another checkout to compare two trees on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

REPEATS = 3


def _env(tmp: Path, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEATHER_")}
    (tmp / "dagster_home").mkdir(exist_ok=True)
    (tmp / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env.update(DAGSTER_HOME=str(tmp / "dagster_home"), WEATHER_DATA_DIR=str(tmp / "data"), WEATHER_DATABASE_URL=db_url)
    return env


def _child_cpu(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    """User + system CPU of ``cmd`` and every descendant it waited for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _seed_history(engine: sa.Engine, miners: int, rounds: int, now: datetime, settings) -> list[int]:
    """``rounds`` daily rounds before today, each with ``miners`` forecasts Day1-scored and the ERA5
    leads whose truth is due by now scored (the rest waiting): the steady state of a validator."""
    from weather_dagster.db.schema import forecast_runs, forecast_stats, forecast_steps, miner_responses
    from weather_dagster.orchestration.readiness import era5_due_time

    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    run_ids = []
    with engine.begin() as conn:
        for back in range(rounds, 0, -1):
            init = today - timedelta(days=back)
            done_leads = [
                lead for lead in settings.scoring.era5_lead_hours if era5_due_time(init, lead, settings) < now
            ]
            run_id = conn.execute(
                sa.insert(forecast_runs)
                .values(
                    gfs_init_time_utc=init,
                    previous_step_time_utc=init - timedelta(hours=6),
                    run_initiation_time=init,
                    status="scoring_era5" if done_leads else "awaiting_era5",
                    created_at=init,
                    updated_at=init,
                )
                .returning(forecast_runs.c.id)
            ).scalar_one()
            run_ids.append(run_id)
            status = "era5_scoring" if done_leads else "day1_scored"
            base = {"run_id": run_id, "created_at": init, "updated_at": init}
            conn.execute(
                sa.insert(miner_responses),
                [{**base, "miner_uid": uid, "miner_hotkey": f"hk{uid}", "status": status} for uid in range(miners)],
            )
            conn.execute(
                sa.insert(forecast_stats),
                [
                    {
                        **base,
                        "miner_uid": uid,
                        "miner_hotkey": f"hk{uid}",
                        "forecast_init_time": init,
                        "forecast_status": status,
                    }
                    for uid in range(miners)
                ],
            )
            steps = [("query", 0), ("poll", 0), ("manifest", 0), ("day1", 0), *(("era5", lead) for lead in done_leads)]
            conn.execute(
                sa.insert(forecast_steps),
                [
                    {
                        **base,
                        "miner_uid": uid,
                        "miner_hotkey": f"hk{uid}",
                        "step_name": name,
                        "lead_hours": lead,
                        "status": "succeeded",
                    }
                    for uid in range(miners)
                    for name, lead in steps
                ],
            )
    return run_ids


class Published:
    """The reference in the sensor: ERA5 is out for every clock-due lead, and all of those are scored,
    so a tick reads every round's ERA5 steps and finds nothing to request (the steady state)."""

    def era5_available(self, valid_time: datetime) -> bool:
        return True


def sensor_tick_cpu_ms(tmp: Path, miners: int, rounds: int, ticks: int) -> tuple[float, float, int]:
    from dagster import DagsterInstance, build_sensor_context

    from weather_dagster.dagster_defs.automation import build_sensors
    from weather_dagster.db.engine import Database
    from weather_dagster.orchestration.due import due_work
    from weather_dagster.settings import load_settings

    url = f"sqlite:///{tmp / 'history.db'}"
    settings = load_settings(data_dir=tmp / "data", database_url=url)
    database = Database(url)
    _seed_history(database.engine, miners, rounds, datetime.now(UTC), settings)
    sensor = build_sensors(settings)[0]
    resources = {"settings": settings, "db": database, "reference": Published()}
    samples = []
    with DagsterInstance.ephemeral() as instance:
        for tick in range(ticks + 1):
            context = build_sensor_context(instance=instance, resources=resources)
            started = time.process_time()
            result = sensor(context)
            if tick:  # the first tick warms caches (and, on old trees, syncs the round statuses)
                samples.append(time.process_time() - started)
    requests = len(getattr(result, "run_requests", None) or [])
    due = []
    for _ in range(ticks):
        started = time.process_time()
        due_work(database.engine, settings, datetime.now(UTC), resources["reference"].era5_available)
        due.append(time.process_time() - started)
    database.dispose()
    return 1000 * sorted(samples)[len(samples) // 2], 1000 * sorted(due)[len(due) // 2], requests


def run_start_cpu_s(tmp: Path, repo: Path) -> float:
    from weather_dagster.db.engine import Database
    from weather_dagster_tests.support.helpers import make_round

    url = f"sqlite:///{tmp / 'runs.db'}"
    database = Database(url)
    init = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    run_id = make_round(database.engine, init=init)
    database.dispose()
    config = {
        "ops": {"score_batch": {"config": {"run_id": run_id, "date": f"{init:%Y-%m-%d}", "kind": "day1", "uids": []}}}
    }
    (tmp / "run.json").write_text(json.dumps(config))
    dagster = str(Path(sys.executable).parent / "dagster")
    cmd = [
        dagster,
        "job",
        "execute",
        "-m",
        "weather_dagster.definitions",
        "-a",
        "defs",
        "-j",
        "score_batch_job",
        "-c",
        str(tmp / "run.json"),
    ]
    env = _env(tmp, url)
    _child_cpu(cmd, env, repo)  # warm the file cache
    return min(_child_cpu(cmd, env, repo) for _ in range(REPEATS))


def import_cpu_s(tmp: Path, repo: Path) -> float:
    cmd = [sys.executable, "-c", "import weather_dagster.definitions"]
    env = _env(tmp, f"sqlite:///{tmp / 'import.db'}")
    _child_cpu(cmd, env, repo)
    return min(_child_cpu(cmd, env, repo) for _ in range(REPEATS))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--miners", type=int, default=255)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--ticks", type=int, default=5)
    args = parser.parse_args()
    import weather_dagster

    repo = Path(weather_dagster.__file__).resolve().parents[1]
    print(f"tree: {repo}")
    with tempfile.TemporaryDirectory(prefix="bench_dagster_") as name:
        tmp = Path(name)
        print(f"import_definitions_cpu_s: {import_cpu_s(tmp, repo):.2f}", flush=True)
        print(f"run_start_cpu_s: {run_start_cpu_s(tmp, repo):.2f}", flush=True)
        tick_ms, due_ms, requests = sensor_tick_cpu_ms(tmp, args.miners, args.rounds, args.ticks)
        print(f"sensor_tick_cpu_ms: {tick_ms:.1f}  ({args.miners} miners x {args.rounds} rounds, {requests} requests)")
        print(f"due_work_cpu_ms: {due_ms:.1f}  (of which reading the due work, orchestration.due)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
