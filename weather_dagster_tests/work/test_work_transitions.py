"""Every (from, to) pair of every state machine, through the work layer, on SQLite and PostgreSQL.

The expected tables are the hand-written ones of ``test_states``. For each pair a row is put in the
``from`` state and the layer's operation for the ``to`` state runs in its own transaction: an allowed
pair moves the row (True), a replay (``to == from``) writes nothing (False), and every other pair
raises ``IllegalTransition`` and leaves the row exactly as it was.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
import sqlalchemy as sa

from weather_dagster import work
from weather_dagster.core.retry import RetryPolicy
from weather_dagster.core.states import IllegalTransition, MinerForecastStatus, RoundStatus, StepName, StepStatus
from weather_dagster.db.schema import forecast_runs, forecast_steps, miner_responses
from weather_dagster_tests.support.helpers import INIT, make_response, make_round
from weather_dagster_tests.work.test_states import EXPECTED

S = StepStatus
NOW = INIT + timedelta(days=1)


def _step_ops(policy: RetryPolicy):
    """The layer's operation that moves a step to each state (pending has none: it is only seeded)."""
    return {
        S.IN_PROGRESS: lambda conn, key: work.start(conn, policy, key, now=NOW),
        S.SUCCEEDED: lambda conn, key: work.succeed(conn, policy, key, now=NOW),
        S.FAILED: lambda conn, key: work.fail(conn, policy, key, "boom", now=NOW),
        S.RETRY_SCHEDULED: lambda conn, key: work.schedule_retry(
            conn, policy, key, "blip", attempt=1, next_retry_time=NOW, now=NOW
        ),
        S.WAITING_FOR_TRUTH: lambda conn, key: work.wait_for_truth(conn, policy, key, next_check_time=NOW, now=NOW),
    }


def _row(engine: sa.Engine, table: sa.Table, where) -> dict | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(table).where(where)).first()
    return dict(row._mapping) if row is not None else None


def _check(engine, table, where, machine, current, target, call) -> None:
    before = _row(engine, table, where)
    if current is not None and target == current:
        with engine.begin() as conn:
            assert call(conn) is False, (machine, current, target)
        assert _row(engine, table, where) == before
    elif target in EXPECTED[machine][S.PENDING if current is None else current]:
        with engine.begin() as conn:
            assert call(conn) is True, (machine, current, target)
        assert _row(engine, table, where)["status"] == str(target)
    else:
        with pytest.raises(IllegalTransition) as info, engine.begin() as conn:
            call(conn)
        assert f"'{target}'" in str(info.value) and machine in str(info.value)
        assert _row(engine, table, where) == before, (machine, current, target)


def test_every_step_pair(database, settings) -> None:
    engine, policy = database.engine, RetryPolicy.from_settings(settings)
    run_id = make_round(engine)
    make_response(engine, run_id, 7, "hk7")
    ops = _step_ops(policy)
    # None: no row yet, which the table treats as pending for start and fail (a step seen first as it runs).
    for lead, (current, target) in enumerate(itertools.product([None, *S], list(ops)), start=1):
        key = work.StepKey(run_id, 7, "hk7", StepName.ERA5, lead_hours=lead)
        if current is not None:
            with engine.begin() as conn:
                conn.execute(
                    sa.insert(forecast_steps).values(
                        **key.as_values(), status=str(current), retry_count=0, created_at=NOW, updated_at=NOW
                    )
                )
        call = lambda conn, key=key, op=ops[target]: op(conn, key)  # noqa: E731
        _check(engine, forecast_steps, key.where(), "step", current, target, call)


def test_seeding_never_moves_an_existing_step(database) -> None:
    engine = database.engine
    run_id = make_round(engine)
    for lead, current in enumerate(S, start=1):
        key = work.StepKey(run_id, 7, "hk7", StepName.ERA5, lead_hours=lead)
        with engine.begin() as conn:
            conn.execute(
                sa.insert(forecast_steps).values(
                    **key.as_values(), status=str(current), retry_count=2, created_at=NOW, updated_at=NOW
                )
            )
        before = _row(engine, forecast_steps, key.where())
        with engine.begin() as conn:
            assert work.ensure_pending(conn, key, due_at=NOW) is False
        assert _row(engine, forecast_steps, key.where()) == before


def test_every_round_pair(database) -> None:
    engine = database.engine
    for hours, (current, target) in enumerate(itertools.product(RoundStatus, repeat=2)):
        run_id = make_round(engine, init=INIT + timedelta(hours=6 * hours), status=current)
        _check(
            engine,
            forecast_runs,
            forecast_runs.c.id == run_id,
            "round",
            current,
            target,
            lambda conn, run_id=run_id, target=target: work.set_round_status(conn, run_id, target, now=NOW),
        )


def test_every_forecast_pair(database) -> None:
    engine = database.engine
    run_id = make_round(engine)
    for uid, (current, target) in enumerate(itertools.product(MinerForecastStatus, repeat=2)):
        make_response(engine, run_id, uid, f"hk{uid}")
        r = miner_responses.c
        where = sa.and_(r.run_id == run_id, r.miner_uid == uid)
        with engine.begin() as conn:
            conn.execute(sa.update(miner_responses).where(where).values(status=str(current)))
        _check(
            engine,
            miner_responses,
            where,
            "miner_forecast",
            current,
            target,
            lambda conn, uid=uid, target=target: work.set_miner_status(conn, run_id, uid, f"hk{uid}", target, now=NOW),
        )


def test_retry_now_only_brings_a_waiting_step_forward(database, settings) -> None:
    engine, policy = database.engine, RetryPolicy.from_settings(settings)
    run_id = make_round(engine)
    make_response(engine, run_id, 7, "hk7")
    key = work.StepKey(run_id, 7, "hk7", StepName.DAY1)
    later = NOW + timedelta(hours=1)
    with engine.begin() as conn:
        work.start(conn, policy, key, now=NOW)
        work.schedule_retry(conn, policy, key, "blip", attempt=1, next_retry_time=later, now=NOW)
    with engine.connect() as conn:
        assert not conn.execute(sa.select(forecast_steps.c.id).where(work.due_condition(NOW))).all()
    with engine.begin() as conn:
        assert work.retry_now(conn, key, now=NOW) is True
    with engine.connect() as conn:
        due = conn.execute(sa.select(forecast_steps.c.id).where(work.due_condition(NOW))).all()
        assert len(due) == 1
    with engine.begin() as conn:
        work.start(conn, policy, key, attempt=2, now=NOW)
        work.succeed(conn, policy, key, attempt=2, now=NOW)
    with pytest.raises(IllegalTransition, match="'succeeded'"), engine.begin() as conn:
        work.retry_now(conn, key, now=NOW)


def test_cancel_fails_the_step_and_cancels_the_forecast_together(database, settings) -> None:
    from weather_dagster.miners.lifecycle import HotkeyChanged

    engine, policy = database.engine, RetryPolicy.from_settings(settings)
    run_id = make_round(engine)
    make_response(engine, run_id, 7, "hk7")
    key = work.StepKey(run_id, 7, "hk7", StepName.POLL)
    with engine.begin() as conn:
        work.start(conn, policy, key, now=NOW)
        assert work.cancel(conn, policy, key, HotkeyChanged("hotkey changed"), now=NOW) is True
    assert _row(engine, forecast_steps, key.where())["status"] == "failed"
    response = _row(engine, miner_responses, miner_responses.c.miner_uid == 7)
    assert (response["status"], response["failure_category"]) == ("cancelled", "hotkey_changed")
