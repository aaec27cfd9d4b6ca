from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from weather_dagster import work
from weather_dagster.core.retry import RetryPolicy
from weather_dagster.core.states import StepName
from weather_dagster.db.engine import make_engine
from weather_dagster.db.schema import forecast_stats, forecast_steps
from weather_dagster.db.steps import StepKey, StepLog
from weather_dagster.settings import load_settings
from weather_dagster_tests.support.helpers import make_round

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
POLICY = RetryPolicy.from_settings(load_settings())


def claim_due_steps(engine: sa.Engine, *, step_names=None, **kwargs) -> list[work.ClaimedStep]:
    """One claim in its own transaction, as the miner worker makes it."""
    where = forecast_steps.c.step_name.in_([str(StepName(n)) for n in step_names]) if step_names else None
    with engine.begin() as conn:
        return work.claim(conn, POLICY, where=where, **kwargs)


def seed_due_steps(engine: sa.Engine, run_id: int, count: int, due_at: datetime = NOW) -> None:
    rows = [
        {
            "run_id": run_id,
            "miner_uid": i % 256,
            "miner_hotkey": f"hk{i}",
            "step_name": "poll",
            "substep": "",
            "lead_hours": 0,
            "status": "pending",
            "retry_count": 0,
            "next_retry_time": due_at,
            "created_at": NOW,
            "updated_at": NOW,
        }
        for i in range(count)
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(forecast_steps), rows)


def test_claims_only_due_work(database, steps: StepLog) -> None:
    run_id = make_round(database.engine)
    due = StepKey(run_id, 1, "a", StepName.QUERY)
    later = StepKey(run_id, 2, "b", StepName.QUERY)
    done = StepKey(run_id, 3, "c", StepName.QUERY)
    steps.ensure_pending(due, due_at=NOW - timedelta(seconds=1))
    steps.ensure_pending(later, due_at=NOW + timedelta(hours=1))
    steps.start(done, now=NOW)
    steps.succeed(done, now=NOW)
    claimed = claim_due_steps(database.engine, worker_id="w1", limit=10, lease_s=60, now=NOW)
    assert [c.key for c in claimed] == [due]
    assert claimed[0].attempt == 1 and not claimed[0].lease_expired
    assert steps.get(due).status == "in_progress" and steps.get(due).claimed_by == "w1"
    # Nothing is due twice.
    assert claim_due_steps(database.engine, worker_id="w2", limit=10, lease_s=60, now=NOW) == []


def test_retry_attempt_numbers_and_step_filter(database, steps: StepLog) -> None:
    run_id = make_round(database.engine)
    key = StepKey(run_id, 4, "d", StepName.DAY1)
    steps.start(key, now=NOW)
    steps.schedule_retry(key, "HTTP 503", attempt=1, next_retry_time=NOW + timedelta(seconds=300), now=NOW)
    assert claim_due_steps(database.engine, worker_id="w", limit=5, lease_s=60, now=NOW) == []
    later = NOW + timedelta(seconds=301)
    assert claim_due_steps(database.engine, worker_id="w", limit=5, lease_s=60, now=later, step_names=["poll"]) == []
    claimed = claim_due_steps(database.engine, worker_id="w", limit=5, lease_s=60, now=later, step_names=["day1"])
    assert [(c.key, c.attempt) for c in claimed] == [(key, 2)]


def test_abandoned_in_progress_steps_are_reclaimed(database, steps: StepLog) -> None:
    run_id = make_round(database.engine)
    key = StepKey(run_id, 5, "e", StepName.ERA5, lead_hours=24)
    steps.ensure_pending(key)
    first = claim_due_steps(database.engine, worker_id="dies", limit=1, lease_s=60, now=NOW)
    assert len(first) == 1
    assert claim_due_steps(database.engine, worker_id="w2", limit=1, lease_s=60, now=NOW + timedelta(seconds=30)) == []
    again = claim_due_steps(database.engine, worker_id="w2", limit=1, lease_s=60, now=NOW + timedelta(seconds=61))
    assert [c.key for c in again] == [key] and again[0].lease_expired
    assert steps.get(key).claimed_by == "w2"


def _claim_all(url: str, worker: str, queue, barrier) -> None:
    engine = make_engine(url)
    got: list[int] = []
    try:
        with engine.connect():
            pass  # connect before the race starts
        barrier.wait(timeout=60)
        while True:
            batch = claim_due_steps(engine, worker_id=worker, limit=7, lease_s=600, now=NOW)
            if not batch:
                break
            got.extend(c.id for c in batch)
    finally:
        engine.dispose()
    queue.put((worker, got))


def test_two_processes_claim_each_of_1000_steps_exactly_once(database, db_url: str, backend: str) -> None:
    run_id = make_round(database.engine)
    seed_due_steps(database.engine, run_id, 1000)
    ctx = multiprocessing.get_context("spawn")
    queue, barrier = ctx.Queue(), ctx.Barrier(2)
    workers = [ctx.Process(target=_claim_all, args=(db_url, f"p{i}", queue, barrier)) for i in range(2)]
    for w in workers:
        w.start()
    results = dict(queue.get(timeout=120) for _ in workers)
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    claimed = results["p0"] + results["p1"]
    assert len(claimed) == 1000 and len(set(claimed)) == 1000
    if backend == "postgresql":
        # Both really competed (they start together behind a barrier). SQLite's busy handler is not fair,
        # so there one writer may legitimately take every batch; exactly-once is what matters on both.
        assert results["p0"] and results["p1"]
    with database.engine.connect() as conn:
        owners = dict(conn.execute(sa.select(forecast_steps.c.id, forecast_steps.c.claimed_by)).all())
    assert all(owners[i] == "p0" for i in results["p0"]) and all(owners[i] == "p1" for i in results["p1"])


def test_the_claim_starts_the_step_and_its_stats_in_one_write(database, steps: StepLog) -> None:
    run_id = make_round(database.engine)
    key = StepKey(run_id, 6, "f", StepName.POLL)
    steps.ensure_pending(key, due_at=NOW)
    (claimed,) = claim_due_steps(database.engine, worker_id="w", lease_s=60, now=NOW, dagster_run_id="run-1")
    assert (claimed.key, claimed.attempt, claimed.previous_status) == (key, 1, "pending")
    row = steps.get(key)
    assert (row.status, row.claimed_by, row.dagster_run_id, row.retry_count) == ("in_progress", "w", "run-1", 0)
    assert row.lease_expires_at == NOW + timedelta(seconds=60) and row.started_at == NOW
    with database.engine.connect() as conn:
        stats = conn.execute(sa.select(forecast_stats).where(forecast_stats.c.miner_uid == 6)).one()
    assert (stats.current_forecast_stage, stats.current_forecast_status) == ("poll", "in_progress")
    assert stats.retries_remaining == POLICY.attempts_for(StepName.POLL)
    # The claimed step is held: starting it again is not a move (False), finishing it is.
    assert steps.start(key, now=NOW) is False
    assert steps.succeed(key, now=NOW) is True


def test_claim_rows_filters_and_never_shares(database, steps: StepLog) -> None:
    run_a, run_b = make_round(database.engine), make_round(database.engine, init=NOW)
    for run_id in (run_a, run_b):
        for uid in (1, 2):
            steps.ensure_pending(StepKey(run_id, uid, f"h{uid}", StepName.POLL), due_at=NOW - timedelta(seconds=1))
    where = sa.and_(forecast_steps.c.run_id == run_a, forecast_steps.c.miner_uid == 2)
    with database.engine.begin() as conn:
        rows = [c.row for c in work.claim(conn, POLICY, where=where, worker_id="w1", lease_s=60, now=NOW)]
    assert [(r.run_id, r.miner_uid, r.status, r.retry_count) for r in rows] == [(run_a, 2, "pending", 0)]
    with database.engine.begin() as conn:
        assert work.claim(conn, POLICY, where=where, worker_id="w2", lease_s=60, now=NOW) == []
        others = work.claim(conn, POLICY, where=forecast_steps.c.run_id == run_b, worker_id="w3", lease_s=60, now=NOW)
    assert sorted(c.key.miner_uid for c in others) == [1, 2]
