"""Operator actions: retry a step now, cancel a miner's thread, score a past round, redo the rollups.

Each is one plain function (the CLI subcommands and the Dagster jobs of
``dagster_defs/operator_jobs.py`` both call it), idempotent (a repeat leaves the rows one call left,
and says it changed nothing), and recorded in the step log: a coordinator row per action and target
(``round_finalize`` / ``operator:<action>:<target>``, succeeded, never claimable) whose context holds
who-asked-what. Each touches the work layer through one call point (``_make_due``, ``_cancel_rows``,
``run_day1``/``run_era5``, the rollup functions), so a new claims/steps layer replaces one line each.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from weather_dagster import work
from weather_dagster.core.errors import WeatherError
from weather_dagster.core.retry import RetryPolicy
from weather_dagster.core.states import (
    FORECAST_TERMINAL_VALUES,
    STEP_DUE_VALUES,
    IllegalTransition,
    MinerForecastStatus,
    StepName,
    StepStatus,
)
from weather_dagster.db.schema import forecast_steps, miner_responses, miner_scores
from weather_dagster.db.steps import StepLog
from weather_dagster.db.types import utcnow
from weather_dagster.operator.demo_env import OperatorInputError
from weather_dagster.operator.rounds import find_response, find_round
from weather_dagster.settings import Settings
from weather_dagster.work import StepKey

OPEN_STEP = STEP_DUE_VALUES
TERMINAL_FORECAST = FORECAST_TERMINAL_VALUES


class OperatorCancelled(WeatherError):
    """The operator stopped a miner's thread (`weather-dagster cancel`)."""

    category = "cancelled"


SCOREABLE = ("forecast_ready", "day1_scoring", "day1_scored", "era5_scoring")


@dataclass(frozen=True)
class ActionResult:
    action: str
    target: str
    changed: bool
    message: str

    def line(self) -> str:
        return f"{self.action} {self.target}: {'done' if self.changed else 'no change'} - {self.message}"


def _steps(engine: sa.Engine, settings: Settings) -> StepLog:
    return StepLog(engine, RetryPolicy.from_settings(settings))


def record_action(steps: StepLog, run_id: int, action: str, target: str, details: dict[str, Any], now: datetime):
    """The action's row in the step log: created once (start, succeed), its context refreshed on repeats."""
    key = StepKey.coordinator(run_id, StepName.ROUND_FINALIZE, substep=f"operator:{action}:{target}"[:64])
    context = {"operator_action": action, "target": target, "requested_at": now.isoformat(), **details}
    row = steps.get(key)
    if row is None:
        with steps.batch() as batch:
            batch.start(key, now=now)
            batch.succeed(key, now=now, context=context)
        return
    with steps.engine.begin() as conn:
        conn.execute(sa.update(forecast_steps).where(key.where()).values(context=context, updated_at=now))


def _step_row(conn: sa.Connection, run_id: int, uid: int, step: StepName, lead_hours: int) -> sa.Row:
    s = forecast_steps.c
    row = conn.execute(
        sa.select(forecast_steps).where(
            s.run_id == run_id, s.miner_uid == uid, s.step_name == step.value, s.lead_hours == lead_hours
        )
    ).first()
    if row is not None:
        return row
    have = conn.execute(
        sa.select(s.step_name, s.lead_hours).where(s.run_id == run_id, s.miner_uid == uid).order_by(s.id)
    ).all()
    names = ", ".join(f"{n}:{h}h" if h else n for n, h in have) or "none"
    raise OperatorInputError(
        f"miner {uid} has no {step}{f' lead {lead_hours} h' if lead_hours else ''} step; it has: {names}"
    )


def retry_step_now(
    engine: sa.Engine,
    settings: Settings,
    round_date: date,
    uid: int,
    step: str,
    lead_hours: int = 0,
    *,
    now: datetime | None = None,
) -> ActionResult:
    """Make one miner's open step due now: the next sensor tick claims it instead of waiting its backoff.

    A failed step is terminal in the step state machine, so it is refused with the reason; an ERA5 lead
    whose truth is still missing is claimed, finds no truth, and waits again (readiness decides).
    """
    now = now or utcnow()
    name = StepName(step)
    target = f"uid{uid}:{name}" + (f":{lead_hours}h" if lead_hours else "")
    with engine.begin() as conn:
        run = find_round(conn, round_date)
        row = _step_row(conn, run.id, uid, name, lead_hours)
        if row.status == StepStatus.FAILED.value:
            raise OperatorInputError(
                f"{target} failed for good ({(row.error_json or {}).get('category', 'error')}); a failed step "
                "is terminal in the step state machine: score the round again with `weather-dagster score` "
                "once the cause is fixed, or open a new round"
            )
        if row.status in (StepStatus.SUCCEEDED.value, StepStatus.IN_PROGRESS.value):
            return ActionResult("retry", target, False, f"the step is {row.status}; nothing to retry")
        if row.next_retry_time is not None and row.next_retry_time <= now:
            changed, message = False, f"already due since {row.next_retry_time:%Y-%m-%d %H:%M:%S}Z"
        else:
            work.retry_now(conn, StepKey.from_row(row), now=now)
            changed, message = True, f"{row.status} step due now; the next sensor tick claims it"
    record_action(_steps(engine, settings), run.id, "retry", target, {"previous_status": row.status}, now)
    return ActionResult("retry", target, changed, message)


def _cancel_rows(engine: sa.Engine, steps: StepLog, response: sa.Row, reason: str, now: datetime) -> int:
    """Fail every open step of the thread and mark the forecast cancelled, in the state machines' terms."""
    s = forecast_steps.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(forecast_steps).where(
                s.run_id == response.run_id,
                s.miner_uid == response.miner_uid,
                s.miner_hotkey == response.miner_hotkey,
                s.status.in_([*OPEN_STEP, StepStatus.IN_PROGRESS.value]),
            )
        ).all()
    error = OperatorCancelled(f"cancelled by the operator: {reason}")
    with engine.begin() as conn:  # one transaction: all of it or none
        for row in rows:
            work.fail(conn, steps.policy, StepKey.from_row(row), error, attempt=max(1, row.retry_count), now=now)
        work.set_miner_status(
            conn,
            response.run_id,
            response.miner_uid,
            response.miner_hotkey,
            MinerForecastStatus.CANCELLED,
            now=now,
            failure_category="cancelled",
            error_message=str(error),
        )
    return len(rows)


def cancel_miner(
    engine: sa.Engine, settings: Settings, round_date: date, uid: int, reason: str = "", *, now: datetime | None = None
) -> ActionResult:
    """Stop a miner's thread in a round: its open steps fail, its forecast is cancelled (no more work)."""
    now = now or utcnow()
    reason = reason or "no reason given"
    target = f"uid{uid}"
    with engine.connect() as conn:
        run = find_round(conn, round_date)
        response = find_response(conn, run.id, uid)
    if response.status in TERMINAL_FORECAST:
        return ActionResult("cancel", target, False, f"the forecast is already {response.status}")
    steps = _steps(engine, settings)
    try:
        failed = _cancel_rows(engine, steps, response, reason, now)
    except IllegalTransition as exc:  # it settled between the read and the write
        return ActionResult("cancel", target, False, f"the forecast moved on meanwhile ({exc})")
    record_action(steps, run.id, "cancel", target, {"reason": reason, "steps_failed": failed}, now)
    return ActionResult("cancel", target, True, f"forecast cancelled; {failed} open step(s) failed")


def _score_rows(engine: sa.Engine, run_id: int) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).where(miner_scores.c.run_id == run_id)).scalar_one()


def score_round(
    engine: sa.Engine,
    settings: Settings,
    inputs,
    round_date: date,
    *,
    dagster_run_id: str | None = None,
    now: datetime | None = None,
) -> ActionResult:
    """Score (backfill) a past round from the forecasts' frozen manifests: Day1, then every due ERA5 lead.

    ``inputs`` is a ``ScoringInputs`` (the live one reads each forecast through its frozen manifest).
    Steps already succeeded or failed are skipped by the scoring service, so a repeat scores nothing new.
    """
    from weather_dagster.scoring.service import run_day1, run_era5

    now = now or utcnow()
    steps = _steps(engine, settings)
    r = miner_responses.c
    with engine.connect() as conn:
        run = find_round(conn, round_date)
        uids = (
            conn.execute(
                sa.select(r.miner_uid).where(
                    r.run_id == run.id, r.status.in_(SCOREABLE), r.frozen_manifest.is_not(None)
                )
            )
            .scalars()
            .all()
        )
    before = _score_rows(engine, run.id)
    outcomes: dict[str, int] = {}
    for uid in sorted(uids):
        for scorer in (run_day1, run_era5):
            outcome = scorer(engine, steps, settings, inputs, run.id, uid, dagster_run_id=dagster_run_id, now=now)
            label = f"{scorer.__name__.removeprefix('run_')}:{outcome.status}"
            outcomes[label] = outcomes.get(label, 0) + 1
    changed = _score_rows(engine, run.id) != before
    summary = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "no forecast with a frozen manifest left"
    record_action(steps, run.id, "score", "round", {"miners": len(uids), "outcomes": outcomes}, now)
    return ActionResult("score", f"round {round_date}", changed, summary)


def rerun_rollups(
    engine: sa.Engine,
    settings: Settings,
    publisher,
    round_date: date,
    *,
    plots_dir: Path | None = None,
    now: datetime | None = None,
) -> ActionResult:
    """Recompute the round's score vector, ranks, snapshot, plots, miner stats and the weight set.

    Every write is an upsert on its natural key, so a repeat leaves the same rows. ``publisher`` is the
    configured ``WeightPublisher`` (database, or the chain's).
    """
    from weather_dagster.scoring.store import write_round_scores
    from weather_dagster.stats.miner_stats import update_miner_stats
    from weather_dagster.stats.ranks import update_ranks
    from weather_dagster.stats.report import write_plots
    from weather_dagster.stats.snapshot import write_snapshot
    from weather_dagster.stats.weights import weights_for

    now = now or utcnow()
    r = miner_responses.c
    with engine.begin() as conn:
        run = find_round(conn, round_date)
        vector = write_round_scores(conn, run.id, settings.scoring, now)
        moved = update_ranks(conn, run.id, now)
        write_snapshot(conn, run.id, now)
        pairs = conn.execute(sa.select(r.miner_uid, r.miner_hotkey).where(r.run_id == run.id)).all()
        update_miner_stats(conn, [(p.miner_uid, p.miner_hotkey) for p in pairs], now)
    plots = write_plots(engine, run.id, plots_dir or settings.data_dir / "plots" / f"{round_date}")
    with engine.connect() as conn:
        weights = weights_for(conn, run.gfs_init_time_utc, settings.scoring)
    publisher.publish(weights, run.gfs_init_time_utc, now)
    details = {"round_scores": len(vector), "ranks_changed": moved, "weights": len(weights.weights)}
    record_action(_steps(engine, settings), run.id, "rollups", "round", details, now)
    message = f"{len(vector)} round scores, {moved} ranks changed, {len(weights.weights)} weights, {len(plots)} plots"
    return ActionResult("rollups", f"round {round_date}", True, message)
