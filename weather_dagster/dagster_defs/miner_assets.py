"""Dagster side of the miner threads: ``forecast_round``, ``miner_forecast`` and a batched pass job.

- ``forecast_round`` (daily): creates the round row, snapshots the miners from the ``metagraph``
  resource, seeds responses, stats and query steps, and registers the ``miner`` dynamic partitions.
- ``miner_forecast`` (date x miner): runs that miner's due steps once. It materializes only when the
  forecast is ready (manifest frozen, store opened); a failed or cancelled miner fails the run
  without in-run retries; a miner that must wait ends the run without a materialization, its step
  row holding ``next_retry_time`` for the sensor.
- ``advance_miners_job``: one run for every due miner step of every open round (batched, bounded
  concurrency), each miner's outcome recorded on its own, and a ``miner_forecast`` materialization
  reported for each partition that became ready in the pass. The round's status follows in the run.

The miner modules (HTTP client, Zarr reader, keys) are imported inside the runs that use them, so the
code location loads without xarray or the substrate SDK.
"""

import asyncio

import sqlalchemy as sa
from dagster import (
    AssetExecutionContext,
    AssetMaterialization,
    Definitions,
    Failure,
    MaterializeResult,
    OpExecutionContext,
    asset,
    in_process_executor,
    job,
    op,
)

from weather_dagster.core.states import MinerForecastStatus
from weather_dagster.dagster_defs.partitions import (
    MINER_PARTITIONS_NAME,
    miner_key,
    miner_round_key,
    miner_rounds,
    parse_miner_round_key,
    round_dates,
)
from weather_dagster.dagster_defs.pools import MINER_HTTP_POOL
from weather_dagster.dagster_defs.resources import DatabaseResource, MetagraphResource, SettingsResource, step_log
from weather_dagster.db.engine import Database
from weather_dagster.db.schema import forecast_runs, miner_responses
from weather_dagster.db.types import utcnow
from weather_dagster.orchestration.batching import RunJob
from weather_dagster.orchestration.calendar import init_time_of, partition_date_of
from weather_dagster.orchestration.due import RunKind, due_work
from weather_dagster.orchestration.rounds import round_id_for, sync_round
from weather_dagster.settings import Settings


class SettingsMetagraph:
    """The default metagraph resource: the file named by settings, read at snapshot time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def snapshot(self):
        from weather_dagster.miners.metagraph import metagraph_from_settings

        return metagraph_from_settings(self.settings).snapshot()


@asset(partitions_def=round_dates, group_name="miners")
def forecast_round(
    context: AssetExecutionContext,
    settings: SettingsResource,
    db: DatabaseResource,
    metagraph: MetagraphResource,
) -> MaterializeResult:
    """The round row, the miner snapshot, seeded rows and the miner partitions (idempotent)."""
    from weather_dagster.miners.lifecycle import create_round, seed_miners

    engine = db.engine
    init_time = init_time_of(context.partition_key, settings)
    run_id = create_round(engine, init_time, settings)
    snapshot = seed_miners(engine, step_log(settings, db), run_id, metagraph.snapshot())
    sync_round(engine, run_id, settings, utcnow())
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
def miner_forecast(context: AssetExecutionContext, settings: SettingsResource, db: DatabaseResource):
    """Run this miner's due steps once; materialize when its forecast is ready and its store opened."""
    from weather_dagster.miners.keys import validator_keypair
    from weather_dagster.miners.lifecycle import advance_until_waiting

    date, uid = parse_miner_round_key(context.partition_key)
    run_id = round_id_for(db.engine, date, settings)
    if run_id is None:
        raise Failure(f"no round for {date}: materialize forecast_round first", allow_retries=False)
    asyncio.run(
        advance_until_waiting(
            settings, db.engine, run_id, validator_keypair(settings), uids=[uid], dagster_run_id=context.run.run_id
        )
    )
    sync_round(db.engine, run_id, settings, utcnow())
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


def _rounds_with_due_miner_steps(db: Database, settings: Settings) -> list[int]:
    """Open rounds with a due query, poll or manifest step, by the one due rule (``orchestration.due``)."""
    works = due_work(db.engine, settings, utcnow(), lambda _valid_time: False)
    return [work.run_id for work in works if work.items.get(RunKind.MINERS)]


@op(pool=MINER_HTTP_POOL)
def advance_due_miners(context: OpExecutionContext, settings: SettingsResource, db: DatabaseResource):
    """One batched pass over every due miner step; a materialization per miner that became ready."""
    from weather_dagster.miners.keys import validator_keypair
    from weather_dagster.miners.lifecycle import advance_until_waiting

    keypair = validator_keypair(settings)
    r = miner_responses.c
    for run_id in _rounds_with_due_miner_steps(db, settings):
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
        sync_round(db.engine, run_id, settings, utcnow())
        with db.engine.connect() as conn:
            ready = conn.execute(
                sa.select(miner_responses).where(
                    r.run_id == run_id, r.status == MinerForecastStatus.FORECAST_READY.value
                )
            ).all()
        date = partition_date_of(init_time)
        for row in ready:
            if row.miner_uid not in before:
                context.log_event(
                    AssetMaterialization(
                        asset_key="miner_forecast",
                        partition=miner_round_key(date, row.miner_uid),
                        metadata=_ready_metadata(row),
                    )
                )


@job(name=RunJob.ADVANCE_MINERS.value, executor_def=in_process_executor)
def advance_miners_job():
    """A single op: it runs in the run worker's own process (no step subprocess to start)."""
    advance_due_miners()


def miner_definitions() -> Definitions:
    """The miners domain: the round and per-miner assets and the batched miner pass."""
    return Definitions(assets=[forecast_round, miner_forecast], jobs=[advance_miners_job])
