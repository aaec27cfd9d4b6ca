"""Dagster side of the miner threads: ``forecast_round``, ``miner_forecast`` and a batched pass job.

- ``forecast_round`` (daily): creates the round row, snapshots the miners from the ``metagraph``
  resource, seeds responses, stats and query steps, and registers the ``miner`` dynamic partitions.
- ``miner_forecast`` (date x miner): runs that miner's due steps once. It materializes only when the
  forecast is ready (manifest frozen, store opened); a failed or cancelled miner fails the run
  without in-run retries; a miner that must wait ends the run without a materialization, its step
  row holding ``next_retry_time`` for the sensor.
- ``advance_miners_job``: one run for every due miner step of every open round (batched, bounded
  concurrency), each miner's outcome recorded on its own, and a ``miner_forecast`` materialization
  reported for each partition that became ready in the pass.
"""

import asyncio
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from dagster import (
    AssetExecutionContext,
    AssetMaterialization,
    Failure,
    MaterializeResult,
    OpExecutionContext,
    ResourceParam,
    asset,
    job,
    op,
)

from weather_dagster.core.retry import RetryPolicy
from weather_dagster.core.states import MinerForecastStatus
from weather_dagster.dagster_defs.partitions import (
    MINER_PARTITIONS_NAME,
    miner_key,
    miner_round_key,
    miner_rounds,
    parse_miner_round_key,
    round_dates,
)
from weather_dagster.db.engine import Database
from weather_dagster.db.schema import forecast_runs, forecast_steps, miner_responses
from weather_dagster.db.steps import StepLog
from weather_dagster.miners.keys import validator_keypair
from weather_dagster.miners.lifecycle import MINER_STEPS, advance_until_waiting, create_round, seed_miners
from weather_dagster.miners.metagraph import MetagraphSource, metagraph_from_settings
from weather_dagster.settings import Settings

MINER_HTTP_POOL = "miner_http"


class SettingsMetagraph:
    """The default metagraph resource: the file named by settings, read at snapshot time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def snapshot(self):
        return metagraph_from_settings(self.settings).snapshot()


def metagraph_resource(settings: Settings) -> MetagraphSource:
    return SettingsMetagraph(settings)


def init_time_for(partition_date: str, settings: Settings) -> datetime:
    day = datetime.strptime(partition_date, "%Y-%m-%d").replace(tzinfo=UTC)
    return day + timedelta(hours=settings.round.gfs_cycle_hour_utc)


def _run_id(db: Database, init_time: datetime) -> int | None:
    with db.engine.connect() as conn:
        return conn.execute(
            sa.select(forecast_runs.c.id).where(forecast_runs.c.gfs_init_time_utc == init_time)
        ).scalar_one_or_none()


@asset(partitions_def=round_dates, group_name="miners")
def forecast_round(
    context: AssetExecutionContext,
    settings: ResourceParam[Settings],
    db: ResourceParam[Database],
    metagraph: ResourceParam[MetagraphSource],
) -> MaterializeResult:
    """The round row, the miner snapshot, seeded rows and the miner partitions (idempotent)."""
    engine = db.engine
    init_time = init_time_for(context.partition_key, settings)
    run_id = create_round(engine, init_time, settings)
    snapshot = seed_miners(engine, StepLog(engine, RetryPolicy.from_settings(settings)), run_id, metagraph.snapshot())
    keys = [miner_key(info.uid) for info in snapshot]
    existing = set(context.instance.get_dynamic_partitions(MINER_PARTITIONS_NAME))
    new_keys = [key for key in keys if key not in existing]
    if new_keys:
        context.instance.add_dynamic_partitions(MINER_PARTITIONS_NAME, new_keys)
    return MaterializeResult(
        metadata={
            "run_id": run_id,
            "init_time": init_time.isoformat(),
            "miners": len(keys),
            "new_partitions": len(new_keys),
        }
    )


def _response(db: Database, run_id: int, uid: int) -> sa.Row | None:
    r = miner_responses.c
    with db.engine.connect() as conn:
        return conn.execute(
            sa.select(miner_responses).where(r.run_id == run_id, r.miner_uid == uid).order_by(r.id.desc()).limit(1)
        ).one_or_none()


def _ready_metadata(row: sa.Row) -> dict:
    return {
        "run_id": row.run_id,
        "miner_uid": row.miner_uid,
        "miner_hotkey": row.miner_hotkey,
        "status": row.status,
        "verification_hash": row.verification_hash_claimed or "",
        "manifest_files": len((row.frozen_manifest or {}).get("files", {})),
    }


@asset(
    partitions_def=miner_rounds,
    deps=[forecast_round],
    group_name="miners",
    output_required=False,
    pool=MINER_HTTP_POOL,
)
def miner_forecast(context: AssetExecutionContext, settings: ResourceParam[Settings], db: ResourceParam[Database]):
    """Run this miner's due steps once; materialize when its forecast is ready and its store opened."""
    date, uid = parse_miner_round_key(context.partition_key)
    run_id = _run_id(db, init_time_for(date, settings))
    if run_id is None:
        raise Failure(f"no round for {date}: materialize forecast_round first", allow_retries=False)
    asyncio.run(
        advance_until_waiting(
            settings, db.engine, run_id, validator_keypair(settings), uids=[uid], dagster_run_id=context.run.run_id
        )
    )
    row = _response(db, run_id, uid)
    if row is None:
        raise Failure(f"uid {uid} is not part of round {date}", allow_retries=False)
    if row.status in (MinerForecastStatus.FAILED.value, MinerForecastStatus.CANCELLED.value):
        raise Failure(
            f"miner {uid} {row.status}: {row.failure_category}",
            metadata={"reason": row.error_message or ""},
            allow_retries=False,
        )
    if row.status == MinerForecastStatus.FORECAST_READY.value or row.manifest_frozen_at is not None:
        yield MaterializeResult(metadata=_ready_metadata(row))
    else:
        context.log.info(f"miner {uid} is {row.status}; its next step waits in the step table")


def _open_run_ids(db: Database) -> list[int]:
    s = forecast_steps.c
    with db.engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(s.run_id)
                .where(s.step_name.in_([str(n) for n in MINER_STEPS]), s.status.in_(["pending", "retry_scheduled"]))
                .distinct()
            ).scalars()
        )


@op(pool=MINER_HTTP_POOL)
def advance_due_miners(context: OpExecutionContext, settings: ResourceParam[Settings], db: ResourceParam[Database]):
    """One batched pass over every due miner step; a materialization per miner that became ready."""
    keypair = validator_keypair(settings)
    for run_id in _open_run_ids(db):
        r = miner_responses.c
        with db.engine.connect() as conn:
            before = set(
                conn.execute(
                    sa.select(r.miner_uid).where(r.run_id == run_id, r.manifest_frozen_at.is_not(None))
                ).scalars()
            )
            init_time = conn.execute(
                sa.select(forecast_runs.c.gfs_init_time_utc).where(forecast_runs.c.id == run_id)
            ).scalar_one()
        asyncio.run(advance_until_waiting(settings, db.engine, run_id, keypair, dagster_run_id=context.run.run_id))
        with db.engine.connect() as conn:
            ready = conn.execute(
                sa.select(miner_responses).where(
                    r.run_id == run_id, r.status == MinerForecastStatus.FORECAST_READY.value
                )
            ).all()
        date = init_time.strftime("%Y-%m-%d")
        for row in ready:
            if row.miner_uid not in before:
                context.log_event(
                    AssetMaterialization(
                        asset_key="miner_forecast",
                        partition=miner_round_key(date, row.miner_uid),
                        metadata=_ready_metadata(row),
                    )
                )


@job
def advance_miners_job():
    advance_due_miners()


MINER_ASSETS = [forecast_round, miner_forecast]
MINER_JOBS = [advance_miners_job]
