"""Benchmark: 255 good demo miners, from round seeded to every forecast frozen and opened.

The fleet runs in its own process (``weather-dagster miners serve``), so the validator's peak RSS
is the validator's alone. Poll cadence is shortened (the real one is 5 minutes); everything else is
the production path: handshakes, encrypted calls, manifest verification, freeze, verified open.

    python -m weather_dagster_tests.benchmarks.bench_miners [--count 255] [--grid-deg 5.0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from weather_dagster.core.retry import RetryPolicy
from weather_dagster.db.engine import Database
from weather_dagster.db.schema import miner_responses
from weather_dagster.db.steps import StepLog
from weather_dagster.miners.keys import derived_seed, validator_keypair
from weather_dagster.miners.lifecycle import create_round, run_until_settled, seed_miners
from weather_dagster.miners.metagraph import metagraph_from_settings
from weather_dagster.settings import load_settings


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=255)
    parser.add_argument("--grid-deg", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        metagraph = tmp_path / "metagraph.json"
        env = {**os.environ, "WEATHER_DATA_DIR": str(tmp_path / "fleet")}
        command = [sys.executable, "-m", "weather_dagster.cli", "miners", "serve", "--count", str(args.count)]
        command += ["--grid-deg", str(args.grid_deg), "--metagraph", str(metagraph)]
        fleet = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            for _ in range(1200):
                if metagraph.exists() or fleet.poll() is not None:
                    break
                time.sleep(0.1)
            if not metagraph.exists():
                raise RuntimeError("the demo fleet did not start")
            settings = load_settings(
                data_dir=tmp_path / "validator",
                miners={
                    "allow_private_hosts": ("127.0.0.1",),
                    "hotkey_seed": derived_seed("bench", "validator"),
                    "metagraph_file": metagraph,
                },
                retry={"poll_first_delay_s": 0.2, "poll_interval_s": 0.2, "poll_max_attempts": 1000},
            )
            database = Database(settings.resolved_database_url)
            engine = database.engine
            run_id = create_round(engine, datetime(2026, 11, 20, tzinfo=UTC), settings)
            seed_miners(
                engine,
                StepLog(engine, RetryPolicy.from_settings(settings)),
                run_id,
                metagraph_from_settings(settings).snapshot(),
            )
            started = time.perf_counter()
            settled = asyncio.run(
                run_until_settled(settings, engine, run_id, validator_keypair(settings), max_wait_s=1800)
            )
            elapsed = time.perf_counter() - started
            with engine.connect() as conn:
                ready = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(miner_responses)
                    .where(miner_responses.c.status == "forecast_ready", miner_responses.c.frozen_manifest.is_not(None))
                ).scalar()
            database.dispose()
        finally:
            fleet.send_signal(signal.SIGTERM)
            output, _ = fleet.communicate(timeout=60)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"miners: {args.count}")
    print(f"grid_deg: {args.grid_deg}")
    print(f"settled: {settled}")
    print(f"forecasts_frozen: {ready}")
    print(f"query_poll_freeze_{args.count}_s: {elapsed:.1f}")
    print(f"validator_peak_rss_mb: {peak_kb / 1024:.0f}")
    print(f"http_concurrency: {settings.miners.http_concurrency}")
    for line in output.splitlines():
        if line.startswith("fleet_"):
            print(line)
    return 0 if settled and ready == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
