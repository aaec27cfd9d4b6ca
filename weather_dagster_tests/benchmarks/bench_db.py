"""Step-log and claim throughput on a throwaway PostgreSQL server (and SQLite side by side).

Run: ``make bench-db``. Prints, for PostgreSQL and SQLite side by side in one run:
- ``step_upserts_per_s``: step transitions (each with its stats update) on one connection, 50 per
  transaction through ``StepLog.batch()``; ``step_upserts_own_txn_per_s``: each in its own transaction;
- ``claims_per_s``: one step per claim transaction; ``claims_batched50_per_s``: 50 per claim.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from weather_dagster import work
from weather_dagster.core.retry import RetryPolicy
from weather_dagster.core.states import StepName
from weather_dagster.db.engine import Database
from weather_dagster.db.steps import StepKey, StepLog
from weather_dagster.settings import load_settings
from weather_dagster_tests.support.helpers import make_response, make_round
from weather_dagster_tests.support.pg_server import PostgresServer
from weather_dagster_tests.work.test_claims import seed_due_steps

UPSERTS = 4000
CLAIMS = 2000


def _claim(engine, policy: RetryPolicy, limit: int, now: datetime) -> list:
    with engine.begin() as conn:
        return work.claim(conn, policy, worker_id="bench", limit=limit, lease_s=600, now=now)


def measure(url: str) -> dict[str, float]:
    database = Database(url)
    engine = database.engine
    run_id = make_round(engine)
    for uid in range(256):
        make_response(engine, run_id, uid, f"hk{uid}")
    steps = StepLog(engine, RetryPolicy.from_settings(load_settings()))
    keys = [
        StepKey(run_id, i % 256, f"hk{i % 256}", StepName.ERA5, lead_hours=24 * (1 + i // 256))
        for i in range(UPSERTS // 2)
    ]
    now = datetime.now(UTC)
    half = len(keys) // 2
    start = time.perf_counter()
    for key in keys[:half]:
        steps.start(key, now=now)
        steps.succeed(key, now=now, latency_ms=1.0)
    single_txn = 2 * half / (time.perf_counter() - start)
    start = time.perf_counter()
    for offset in range(half, len(keys), 50):
        with steps.batch() as batch:
            for key in keys[offset : offset + 50]:
                batch.start(key, now=now)
                batch.succeed(key, now=now, latency_ms=1.0)
    upserts = 2 * (len(keys) - half) / (time.perf_counter() - start)

    claim_run = make_round(engine, init=datetime(2026, 1, 1, tzinfo=UTC))
    seed_due_steps(engine, claim_run, CLAIMS, due_at=now)
    start = time.perf_counter()
    claimed = 0
    while batch := _claim(engine, steps.policy, 1, now):
        claimed += len(batch)
    single = claimed / (time.perf_counter() - start)

    batch_run = make_round(engine, init=datetime(2026, 1, 2, tzinfo=UTC))
    seed_due_steps(engine, batch_run, CLAIMS, due_at=now)
    start = time.perf_counter()
    claimed = 0
    while batch := _claim(engine, steps.policy, 50, now):
        claimed += len(batch)
    batched = claimed / (time.perf_counter() - start)
    database.dispose()
    return {"upserts": upserts, "upserts_single": single_txn, "claims": single, "claims_batched": batched}


def main() -> None:
    with PostgresServer() as server:
        pg = measure(server.create_database("bench"))
    with tempfile.TemporaryDirectory() as tmp:
        lite = measure(f"sqlite:///{Path(tmp) / 'bench.db'}")
    print(f"step_upserts_per_s: {pg['upserts']:.0f}")
    print(f"step_upserts_own_txn_per_s: {pg['upserts_single']:.0f}")
    print(f"claims_per_s: {pg['claims']:.0f}")
    print(f"claims_batched50_per_s: {pg['claims_batched']:.0f}")
    print(f"sqlite_step_upserts_per_s: {lite['upserts']:.0f}")
    print(f"sqlite_step_upserts_own_txn_per_s: {lite['upserts_single']:.0f}")
    print(f"sqlite_claims_per_s: {lite['claims']:.0f}")
    print(f"sqlite_claims_batched50_per_s: {lite['claims_batched']:.0f}")


if __name__ == "__main__":
    main()
