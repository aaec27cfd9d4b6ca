"""The round in Dagster: the daily schedule and the sensors that move every round forward.

Sensors read and return run requests; round status moves are work a run does. What to request, with
which run key and in which batches, is decided by plain functions (``orchestration.batching``).

- ``round_schedule`` opens today's round (trigger hour + stable jitter); one run key per GFS cycle.
- ``round_sensor`` reads due work per round (miner HTTP steps, Day1, ready ERA5 leads, rollups) and
  requests one batched run per kind and round, keyed by a digest of the due items with their attempt
  numbers, so a repeated tick is harmless and a retry is a new request. It never requests a kind for
  a round while a run of that kind is queued or running. A round whose window is over, or whose final
  rollup succeeded, gets a ``round_status_job`` run (expire / complete). With
  ``WEATHER_ROUND__SENSOR_DRY_RUN`` it only logs what it would request.
- ``step_failure_sensor`` turns a failed or crashed run into retries of the steps it held (the one
  sensor that writes; see its docstring).
- ``retire_partitions_sensor`` deletes miner partitions no round in the retention window used.
"""

# No `from __future__ import annotations`: Dagster inspects the real annotations of `context`.
from datetime import UTC, datetime

import sqlalchemy as sa
from dagster import (
    Config,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    OpExecutionContext,
    RunFailureSensorContext,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    in_process_executor,
    job,
    op,
    run_failure_sensor,
    schedule,
    sensor,
)

from weather_dagster.core.errors import WeatherError
from weather_dagster.core.states import StepName, StepStatus
from weather_dagster.dagster_defs.miner_assets import advance_miners_job
from weather_dagster.dagster_defs.partitions import MINER_PARTITIONS_NAME, miners
from weather_dagster.dagster_defs.pools import KIND_TAG, ROUND_RUN_KIND, ROUND_TAG, run_tags
from weather_dagster.dagster_defs.resources import DatabaseResource, ReferenceResource, SettingsResource, step_log
from weather_dagster.dagster_defs.scoring_batch import score_batch_job_for
from weather_dagster.dagster_defs.statistics import miner_stats_job, round_rollup_job
from weather_dagster.db.engine import retry_on_disconnect
from weather_dagster.db.schema import forecast_steps
from weather_dagster.db.steps import StepKey
from weather_dagster.db.types import utcnow
from weather_dagster.orchestration.batching import (
    PlannedRun,
    RunJob,
    StatusAction,
    plan_finalize,
    plan_work_runs,
    round_run_key,
    status_run,
)
from weather_dagster.orchestration.calendar import partition_date_of
from weather_dagster.orchestration.due import RoundWork, RunKind, due_work
from weather_dagster.orchestration.retention import keys_to_retire, uids_in_use
from weather_dagster.orchestration.rounds import expiry_due, sync_round
from weather_dagster.orchestration.schedule import round_to_open
from weather_dagster.settings import Settings

ACTIVE = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]
ENDED_BADLY = [DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]

# Partitioning is inferred from the selected asset (daily by init date); one asset, so in-process.
open_round_job = define_asset_job(
    "open_round_job",
    selection=["forecast_round"],
    tags={KIND_TAG: ROUND_RUN_KIND},
    executor_def=in_process_executor,
)


class SyncRoundConfig(Config):
    run_id: int
    action: str  # a StatusAction


@op
def sync_round_op(
    context: OpExecutionContext, config: SyncRoundConfig, settings: SettingsResource, db: DatabaseResource
):
    """Expire a round whose window is over, or complete one whose final rollup succeeded."""
    complete = StatusAction(config.action) is StatusAction.COMPLETE
    status = sync_round(db.engine, config.run_id, settings, utcnow(), complete=complete)
    context.log.info(f"round {config.run_id}: {config.action} -> {status}")


@job(name=RunJob.ROUND_STATUS.value, executor_def=in_process_executor)
def round_status_job():
    sync_round_op.alias("sync_round")()


class RunCrashed(WeatherError):
    category = "run_failed"


def _active(instance, job_name: str, date: str) -> bool:
    records = instance.get_run_records(
        filters=RunsFilter(job_name=job_name, tags={ROUND_TAG: date}, statuses=ACTIVE), limit=1
    )
    return bool(records)


def _failures(instance, job_name: str, date: str, kind: str | None) -> int:
    """Failed or canceled runs of this kind and round (a run that died before holding a step)."""
    return instance.get_runs_count(RunsFilter(job_name=job_name, tags=run_tags(date, kind), statuses=ENDED_BADLY))


def _rollup_succeeded(instance, date: str) -> bool:
    return bool(
        instance.get_run_records(
            filters=RunsFilter(
                job_name=round_rollup_job.name,
                tags=run_tags(date, final=True),
                statuses=[DagsterRunStatus.SUCCESS],
            ),
            limit=1,
        )
    )


def _request(planned: PlannedRun) -> RunRequest:
    return RunRequest(
        run_key=planned.run_key,
        job_name=str(planned.job),
        partition_key=planned.partition_key,
        run_config={"ops": {name: {"config": config} for name, config in planned.op_config.items()}}
        if planned.op_config
        else {},
        tags=run_tags(planned.round_date, planned.kind, planned.final),
    )


def round_requests(works: list[RoundWork], instance, settings: Settings, db, now: datetime) -> list[PlannedRun]:
    """The runs for due work, finalization and expiry of every open round (reads only)."""
    planned = plan_work_runs(
        works,
        batch_size=settings.round.scoring_batch_size,
        slots=settings.round.scoring_pool_limit,
        active=lambda job_name, date: _active(instance, str(job_name), date),
        failures=lambda job_name, date, kind: _failures(instance, str(job_name), date, kind),
    )
    with db.engine.connect() as conn:
        expiring = [w for w in works if expiry_due(conn, w.run_id, settings, now)]
    for work in works:
        if work in expiring:
            planned.append(status_run(work.run_id, work.date, StatusAction.EXPIRE))
        elif work.items.get(RunKind.FINALIZE):
            planned.extend(plan_finalize(work, _rollup_succeeded(instance, work.date)))
    return planned


def round_sensor(
    context: SensorEvaluationContext, settings: SettingsResource, db: DatabaseResource, reference: ReferenceResource
):
    now = utcnow()
    available: dict[datetime, bool] = {}

    def truth_available(valid_time: datetime) -> bool:
        if valid_time not in available:
            try:
                available[valid_time] = reference.era5_available(valid_time)
            except Exception as exc:  # an unreachable source means "not yet", and says why
                context.log.warning(f"ERA5 availability probe failed for {valid_time:%Y-%m-%d %H}Z: {exc}")
                available[valid_time] = False
        return available[valid_time]

    works = due_work(db.engine, settings, now, truth_available)
    planned = round_requests(works, context.instance, settings, db, now)
    if settings.round.sensor_dry_run:
        for run in planned:
            context.log.info(f"[dry run] would request {run.line}")
        lines = "; ".join(run.line for run in planned)
        return SkipReason(f"dry run: {len(planned)} run request(s) not made: " + lines[:1000])
    if not planned:
        return SkipReason("no due work")
    return SensorResult(run_requests=[_request(run) for run in planned])


@schedule(
    cron_schedule="*/5 * * * *",
    job=open_round_job,
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
)
def round_schedule(context: ScheduleEvaluationContext, settings: SettingsResource):
    when = context.scheduled_execution_time or datetime.now(UTC)
    identity = str(settings.miners.hotkey_file or settings.miners.metagraph_file or "validator")
    init = round_to_open(when, settings, identity)
    if init is None:
        return SkipReason("before today's trigger time")
    if settings.round.sensor_dry_run:
        context.log.info(f"[dry run] would open the round for {init:%Y-%m-%d %H}Z")
        return SkipReason("dry run")
    return RunRequest(run_key=round_run_key(init), partition_key=partition_date_of(init))


def step_failure_sensor(context: RunFailureSensorContext, settings: SettingsResource, db: DatabaseResource):
    """Steps a failed run still held are retried (an attempt used), never left in_progress.

    The one sensor that writes: the retry must land even when no run can start (the failure may be
    the run launcher's), and it is a single guarded write per held step, idempotent across ticks.
    """
    run = context.dagster_run
    s = forecast_steps.c

    def retry_held() -> None:
        with db.engine.connect() as conn:
            held = conn.execute(
                sa.select(forecast_steps).where(
                    s.dagster_run_id == run.run_id, s.status == StepStatus.IN_PROGRESS.value
                )
            ).all()
        if settings.round.sensor_dry_run:
            context.log.info(f"[dry run] would schedule retries for {len(held)} step(s) of failed run {run.run_id}")
            return
        steps = step_log(settings, db)
        reason = RunCrashed(f"Dagster run {run.run_id} failed: {context.failure_event.message or 'process died'}")
        for row in held:
            name = StepName(row.step_name)
            key = StepKey(row.run_id, row.miner_uid, row.miner_hotkey, name, row.substep, row.lead_hours)
            steps.record_failure(key, reason, attempt=row.retry_count + 1)

    # Dagster reacts to a failed run once: a connection lost to a database restart must not lose it.
    retry_on_disconnect(retry_held)


def retire_partitions_sensor(context: SensorEvaluationContext, settings: SettingsResource, db: DatabaseResource):
    with db.engine.connect() as conn:
        in_use = uids_in_use(conn, utcnow(), settings.round.partition_retention_days)
    retire = keys_to_retire(context.instance.get_dynamic_partitions(MINER_PARTITIONS_NAME), in_use)
    if not retire:
        return SkipReason("no miner partition to retire")
    if settings.round.sensor_dry_run:
        return SkipReason(f"dry run: would retire miner partitions {retire}")
    return SensorResult(dynamic_partitions_requests=[miners.build_delete_request(retire)])


def build_sensors(settings: Settings) -> list:
    """The sensors, with the tick interval from settings (short in demos, 30 s by default)."""
    interval = int(settings.round.sensor_interval_s)
    running = DefaultSensorStatus.RUNNING
    return [
        sensor(
            jobs=[
                advance_miners_job,
                score_batch_job_for(settings),
                round_rollup_job,
                miner_stats_job,
                round_status_job,
            ],
            minimum_interval_seconds=interval,
            default_status=running,
        )(round_sensor),
        run_failure_sensor(default_status=running, minimum_interval_seconds=interval)(step_failure_sensor),
        sensor(minimum_interval_seconds=3600, default_status=running)(retire_partitions_sensor),
    ]


def automation_definitions(settings: Settings) -> Definitions:
    """The automation domain: the round schedule, the sensors and the jobs that only they request."""
    return Definitions(
        jobs=[open_round_job, round_status_job],
        schedules=[round_schedule],
        sensors=build_sensors(settings),
    )
