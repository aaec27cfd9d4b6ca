from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from weather_dagster.core.states import MinerForecastStatus, RoundStatus, StepName
from weather_dagster.db.schema import forecast_runs, miner_responses
from weather_dagster.db.steps import StepKey
from weather_dagster.orchestration.batching import round_run_key
from weather_dagster.orchestration.due import RunKind, due_work
from weather_dagster.orchestration.readiness import era5_due_time, ready_leads
from weather_dagster.orchestration.retention import keys_to_retire, uids_in_use
from weather_dagster.orchestration.rounds import complete_round, sync_round_status
from weather_dagster.orchestration.schedule import jitter_minutes, round_to_open
from weather_dagster.settings import load_settings
from weather_dagster.work.forecasts import set_miner_status
from weather_dagster_tests.support.helpers import INIT, make_response, make_round

_M = MinerForecastStatus


def test_round_opens_once_after_trigger_plus_jitter() -> None:
    settings = load_settings()
    jitter = jitter_minutes("2026-11-20", "validator-a", 30)
    assert 0 <= jitter <= 30
    assert jitter == jitter_minutes("2026-11-20", "validator-a", 30)  # stable across ticks and restarts
    spread = {jitter_minutes(f"2026-11-{d:02d}", "validator-a", 30) for d in range(1, 29)}
    assert len(spread) > 5
    trigger = datetime(2026, 11, 20, 18, tzinfo=UTC) + timedelta(minutes=jitter)
    assert round_to_open(trigger - timedelta(seconds=1), settings, "validator-a") is None
    opened = {round_to_open(trigger + timedelta(minutes=m), settings, "validator-a") for m in range(0, 300, 5)}
    assert opened == {datetime(2026, 11, 20, tzinfo=UTC)}
    assert len({round_run_key(init) for init in opened}) == 1


def test_hindcast_shifts_the_init_time() -> None:
    settings = load_settings(test_mode=True, hindcast_days=10, round={"trigger_jitter_max_minutes": 0})
    assert round_to_open(datetime(2026, 11, 20, 18, 1, tzinfo=UTC), settings, "v") == datetime(2026, 11, 10, tzinfo=UTC)


def test_era5_readiness_needs_clock_and_truth() -> None:
    settings = load_settings()
    assert era5_due_time(INIT, 24, settings) == INIT + timedelta(hours=24 + 126)
    now = INIT + timedelta(days=8)
    published_until = INIT + timedelta(days=2)
    leads = ready_leads(INIT, settings, now, lambda valid: valid <= published_until)
    # Clock allows leads up to 66 h (8 d - 5.25 d); the source has truth only up to 48 h.
    assert leads == [24, 48]
    test_settings = load_settings(test_mode=True)
    assert ready_leads(INIT, test_settings, INIT + timedelta(days=11), lambda v: True) == list(range(24, 241, 24))


def test_due_work_and_idempotent_run_keys(database, steps) -> None:
    settings = load_settings()
    engine = database.engine
    run_id = make_round(engine, status=RoundStatus.QUERYING_MINERS)
    for uid in (1, 2, 3):
        make_response(engine, run_id, uid, f"hk{uid}")
        steps.ensure_pending(StepKey(run_id, uid, f"hk{uid}", StepName.QUERY), due_at=INIT)
    now = INIT + timedelta(hours=1)
    first = due_work(engine, settings, now, lambda v: True)[0]
    assert [i.miner_uid for i in first.items[RunKind.MINERS]] == [1, 2, 3]
    assert first.run_key(RunKind.MINERS) == due_work(engine, settings, now, lambda v: True)[0].run_key(RunKind.MINERS)
    # A forecast becomes ready: Day1 is due for it; a retry gets a new attempt and so a new key.
    ready = StepKey(run_id, 1, "hk1", StepName.QUERY)
    steps.start(ready, now=now)
    steps.succeed(ready, now=now)
    with engine.begin() as conn:
        set_miner_status(conn, run_id, 1, "hk1", _M.FORECAST_READY)
    key = StepKey(run_id, 2, "hk2", StepName.QUERY)
    steps.start(key, now=now)
    steps.schedule_retry(key, "refused", attempt=1, next_retry_time=now, now=now)
    second = due_work(engine, settings, now, lambda v: True)[0]
    assert [(i.miner_uid, i.step_name) for i in second.items[RunKind.DAY1]] == [(1, "day1")]
    assert [(i.miner_uid, i.attempt) for i in second.items[RunKind.MINERS]] == [(2, 2), (3, 1)]
    assert second.run_key(RunKind.MINERS) != first.run_key(RunKind.MINERS)


def test_era5_work_appears_only_for_ready_leads(database, steps) -> None:
    settings = load_settings()
    engine = database.engine
    run_id = make_round(engine, status=RoundStatus.AWAITING_ERA5)
    make_response(engine, run_id, 4, "hk4")
    with engine.begin() as conn:
        conn.execute(sa.update(miner_responses).values(status=_M.DAY1_SCORED.value))
    assert due_work(engine, settings, INIT + timedelta(days=5), lambda v: True)[0].items[RunKind.ERA5] == []
    items = due_work(engine, settings, INIT + timedelta(days=6, hours=7), lambda v: True)[0].items[RunKind.ERA5]
    assert [(i.miner_uid, i.lead_hours) for i in items] == [(4, 24)]
    done = StepKey(run_id, 4, "hk4", StepName.ERA5, lead_hours=24)
    steps.start(done)
    steps.succeed(done)
    assert due_work(engine, settings, INIT + timedelta(days=6, hours=7), lambda v: True)[0].items[RunKind.ERA5] == []


def test_round_status_follows_miners_and_completes(database) -> None:
    settings = load_settings()
    engine = database.engine
    run_id = make_round(engine)
    for uid in (1, 2):
        make_response(engine, run_id, uid, f"hk{uid}")
    now = INIT + timedelta(hours=19)
    with engine.begin() as conn:
        assert sync_round_status(conn, run_id, settings, now) is RoundStatus.QUERYING_MINERS
        for uid in (1, 2):
            set_miner_status(conn, run_id, uid, f"hk{uid}", _M.FORECAST_READY)
        assert sync_round_status(conn, run_id, settings, now) is RoundStatus.SCORING_DAY1
        set_miner_status(conn, run_id, 1, "hk1", _M.FAILED)
        set_miner_status(conn, run_id, 2, "hk2", _M.DAY1_SCORING)
        set_miner_status(conn, run_id, 2, "hk2", _M.DAY1_SCORED)
        assert sync_round_status(conn, run_id, settings, now) is RoundStatus.AWAITING_ERA5
        set_miner_status(conn, run_id, 2, "hk2", _M.ERA5_SCORING)
        set_miner_status(conn, run_id, 2, "hk2", _M.ERA5_SCORED)
        assert complete_round(conn, run_id, settings, now) is RoundStatus.COMPLETED
        assert conn.execute(sa.select(forecast_runs.c.completed_at)).scalar() is not None


def test_round_expires_after_its_window(database) -> None:
    settings = load_settings()
    run_id = make_round(database.engine)
    make_response(database.engine, run_id, 1, "hk1")
    with database.engine.begin() as conn:
        assert sync_round_status(conn, run_id, settings, INIT + timedelta(days=16, hours=1)) is RoundStatus.EXPIRED


def test_partition_retention(database) -> None:
    engine = database.engine
    old = make_round(engine, init=INIT - timedelta(days=100))
    new = make_round(engine, init=INIT)
    make_response(engine, old, 7, "old7")
    make_response(engine, new, 8, "new8")
    with engine.connect() as conn:
        in_use = uids_in_use(conn, INIT + timedelta(days=1), 45)
    assert in_use == {8}
    assert keys_to_retire(["7", "8", "12"], in_use) == ["7", "12"]
