"""The round in Dagster: the daily schedule, the sensors that move every miner forward, and the
batched worker jobs they launch. All decisions are plain functions in ``weather_dagster.orchestration``.

- ``round_schedule`` opens today's round (trigger hour + stable jitter); one run key per GFS cycle.
- ``round_sensor`` reads due work per round (miner HTTP steps, Day1, ready ERA5 leads, rollups) and
  requests one batched run per kind and round, keyed by a digest of the due items with their attempt
  numbers, so a repeated tick is harmless and a retry is a new request. It never requests a kind for
  a round while a run of that kind is queued or running. With ``WEATHER_ROUND__SENSOR_DRY_RUN`` it
  only logs what it would request and writes nothing.
- ``step_failure_sensor`` turns a failed or crashed run into retries of the steps it held.
- ``retire_partitions_sensor`` deletes miner partitions no round in the retention window used.
"""

# No `from __future__ import annotations`: Dagster inspects the real annotations of `context`.
import json
import time
from datetime import UTC, datetime

import sqlalchemy as sa
from dagster import (
    AssetMaterialization,
    Config,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Failure,
    OpExecutionContext,
    ResourceParam,
    RunFailureSensorContext,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    job,
    op,
    run_failure_sensor,
    schedule,
    sensor,
)

from weather_dagster.core.errors import WeatherError
from weather_dagster.core.states import StepName, StepStatus
from weather_dagster.dagster_defs.miner_assets import advance_miners_job
from weather_dagster.dagster_defs.partitions import MINER_PARTITIONS_NAME, miner_round_key, miners
from weather_dagster.dagster_defs.resources import step_log
from weather_dagster.db.engine import Database
from weather_dagster.db.schema import forecast_steps
from weather_dagster.db.steps import StepKey
from weather_dagster.db.types import utcnow
from weather_dagster.orchestration.due import RoundWork, WorkKind, due_work
from weather_dagster.orchestration.retention import keys_to_retire, uids_in_use
from weather_dagster.orchestration.rounds import complete_round, sync_round_status
from weather_dagster.orchestration.schedule import round_run_key, round_to_open
from weather_dagster.reference.sources import ReferenceData
from weather_dagster.scoring.inputs import ScoringInputs
from weather_dagster.scoring.service import run_day1, run_era5
from weather_dagster.settings import Settings

SCORING_POOL = "scoring"
ROUND_TAG = "weather/round"
KIND_TAG = "weather/kind"
ACTIVE = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]

# Partitioning is inferred from the selected assets (daily by init date).
open_round_job = define_asset_job("open_round_job", selection=["forecast_round"], tags={"weather/kind": "round"})
round_rollup_job = define_asset_job("round_rollup_job", selection=["subnet_snapshot", "round_weights"])
miner_stats_job = define_asset_job("miner_stats_job", selection=["miner_stats"])


class ScoreBatchConfig(Config):
    run_id: int
    date: str
    kind: str  # "day1" or "era5"
    uids: list[int]


@op(pool=SCORING_POOL)
def score_batch(
    context: OpExecutionContext,
    config: ScoreBatchConfig,
    settings: ResourceParam[Settings],
    db: ResourceParam[Database],
    scoring_inputs: ResourceParam[ScoringInputs],
):
    """Score several miners in one run (a run costs seconds of CPU); each outcome is its own.

    A failure of one miner is recorded in its own step rows by the scoring service and never stops
    the others; each miner scored is reported as a materialization of its own partition.
    """
    steps = step_log(settings, db)
    scorer = run_day1 if config.kind == "day1" else run_era5
    asset_key = "day1_score" if config.kind == "day1" else "era5_score"
    scored = failed = 0
    validator_cpu = 0.0  # CPU of this process inside the scoring service: the validator's own work
    wall_started, op_cpu_started = time.perf_counter(), time.process_time()
    database_errors = []
    for uid in config.uids:
        cpu_started = time.process_time()
        try:
            outcome = scorer(
                db.engine, steps, settings, scoring_inputs, config.run_id, uid, dagster_run_id=context.run.run_id
            )
        except Exception as exc:  # recorded as a retry by the service, unless the database itself failed
            failed += 1
            context.log.warning(f"uid {uid}: {type(exc).__name__}: {exc}")
            if isinstance(exc, sa.exc.DBAPIError):
                database_errors.append(uid)
            continue
        finally:
            release = getattr(scoring_inputs, "release", None)
            if release is not None:
                release()
            validator_cpu += time.process_time() - cpu_started
        if outcome.status == "scored":
            scored += 1
            metadata = {"summary": outcome.detail or ""}
            if outcome.leads:
                metadata["leads"] = json.dumps({str(k): v for k, v in sorted(outcome.leads.items())})
            context.log_event(
                AssetMaterialization(
                    asset_key=asset_key, partition=miner_round_key(config.date, uid), metadata=metadata
                )
            )
        elif outcome.status == "failed":
            failed += 1
    context.log.info(f"{config.kind}: {scored} scored, {failed} failed of {len(config.uids)}")
    # Cost accounting for operators and the round benchmark: how much of this run was scoring.
    context.add_output_metadata(
        {
            "miners": len(config.uids),
            "scored": scored,
            "failed": failed,
            "validator_cpu_s": round(validator_cpu, 4),
            "op_cpu_s": round(time.process_time() - op_cpu_started, 4),
            "op_wall_s": round(time.perf_counter() - wall_started, 4),
        }
    )
    _fail_if_unrecorded(db, context.run.run_id, database_errors)


def _fail_if_unrecorded(db: Database, dagster_run_id: str, database_errors: list[int]) -> None:
    """End the run failed when an outcome may not be in the step log, so nothing is left behind.

    A database error (a restarted server, a dropped connection) can strike between ``start`` and the
    outcome's write: the step stays in_progress (scoring steps hold no lease) or was never started,
    and a successful run would leave it so for good, under a run key Dagster never launches again.
    A failed run instead has ``step_failure_sensor`` retry the steps it held and gives
    ``round_sensor`` a fresh run key for the rest.
    """
    s = forecast_steps.c
    with db.engine.connect() as conn:
        held = conn.execute(
            sa.select(sa.func.count()).where(
                s.dagster_run_id == dagster_run_id, s.status == StepStatus.IN_PROGRESS.value
            )
        ).scalar_one()
    if held or database_errors:
        raise Failure(
            f"{held} step(s) left in progress, database errors for uids {database_errors}: "
            "failing the run so the sensors retry them"
        )


@job(tags={KIND_TAG: "scoring"})
def score_batch_job():
    score_batch()


def _active_runs(instance, job_name: str, date: str) -> bool:
    records = instance.get_run_records(
        filters=RunsFilter(job_name=job_name, tags={ROUND_TAG: date}, statuses=ACTIVE), limit=1
    )
    return bool(records)


def _crash_generation(instance, job_name: str, tags: dict[str, str]) -> str:
    """A run-key suffix that changes whenever a run of this kind for this round ended badly.

    A run that dies before it marks any step in_progress (killed while importing, OOM, a launch
    failure) leaves the due items and so the digest unchanged; Dagster would skip that run key
    forever and the round would stall. Counting failed and canceled runs gives a fresh key then.
    """
    failed = instance.get_runs_count(
        RunsFilter(job_name=job_name, tags=tags, statuses=[DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED])
    )
    return f":f{failed}" if failed else ""


def _uids(work: RoundWork, kind: WorkKind) -> list[int]:
    return sorted({item.miner_uid for item in work.items.get(kind, [])})


def round_requests(works: list[RoundWork], instance, batch_size: int) -> tuple[list[RunRequest], list[str]]:
    """The run requests for due work, and a line per request for logs and dry runs."""
    requests, lines = [], []
    miner_items = [w for w in works if w.items.get(WorkKind.MINERS)]
    if miner_items and not _active_runs(instance, advance_miners_job.name, "all"):
        key = "+".join(w.run_key(WorkKind.MINERS) for w in miner_items)
        key += _crash_generation(instance, advance_miners_job.name, {ROUND_TAG: "all"})
        requests.append(RunRequest(run_key=key, job_name=advance_miners_job.name, tags={ROUND_TAG: "all"}))
        lines.append(f"advance_miners_job for {sum(len(w.items[WorkKind.MINERS]) for w in miner_items)} steps")
    for work in works:
        for kind in (WorkKind.DAY1, WorkKind.ERA5):
            uids = _uids(work, kind)
            if not uids or _active_runs(instance, score_batch_job.name, work.date):
                continue
            generation = _crash_generation(instance, score_batch_job.name, {ROUND_TAG: work.date, KIND_TAG: str(kind)})
            for start in range(0, len(uids), batch_size):
                chunk = uids[start : start + batch_size]
                requests.append(
                    RunRequest(
                        run_key=f"{work.run_key(kind)}:{start}{generation}",
                        job_name=score_batch_job.name,
                        run_config={
                            "ops": {
                                "score_batch": {
                                    "config": {
                                        "run_id": work.run_id,
                                        "date": work.date,
                                        "kind": str(kind),
                                        "uids": chunk,
                                    }
                                }
                            }
                        },
                        tags={ROUND_TAG: work.date, KIND_TAG: str(kind)},
                    )
                )
                lines.append(f"score_batch_job {kind} round {work.date}: uids {chunk}")
            break  # one scoring kind per round per tick: Day1 first, ERA5 when Day1 is quiet
    return requests, lines


def round_sensor(
    context: SensorEvaluationContext,
    settings: ResourceParam[Settings],
    db: ResourceParam[Database],
    reference: ResourceParam[ReferenceData],
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

    dry_run = settings.round.sensor_dry_run
    works = due_work(db.engine, settings, now, truth_available)
    if not dry_run:
        with db.engine.begin() as conn:
            for work in works:
                work.status = sync_round_status(conn, work.run_id, settings, now)
    requests, lines = round_requests(works, context.instance, settings.round.scoring_batch_size)
    for work in works:
        if work.items.get(WorkKind.FINALIZE):
            finals = _finalize(context, db, settings, work, now, dry_run)
            requests.extend(finals[0])
            lines.extend(finals[1])
    if dry_run:
        for line in lines:
            context.log.info(f"[dry run] would request {line}")
        return SkipReason(f"dry run: {len(lines)} run request(s) not made: " + "; ".join(lines)[:1000])
    if not requests:
        return SkipReason("no due work")
    return SensorResult(run_requests=requests)


def _finalize(context, db, settings, work: RoundWork, now: datetime, dry_run: bool):
    """Every forecast settled: roll the round up once, then mark it completed."""
    final_key = f"final:{work.date}"
    done = context.instance.get_run_records(
        filters=RunsFilter(
            job_name=round_rollup_job.name,
            tags={ROUND_TAG: work.date, "weather/final": "1"},
            statuses=[DagsterRunStatus.SUCCESS],
        ),
        limit=1,
    )
    if done:
        if not dry_run:
            with db.engine.begin() as conn:
                complete_round(conn, work.run_id, settings, now)
        return [], [f"complete round {work.date}"]
    tags = {ROUND_TAG: work.date, "weather/final": "1"}
    return (
        [
            RunRequest(run_key=final_key, job_name=round_rollup_job.name, partition_key=work.date, tags=tags),
            RunRequest(run_key=f"stats:{work.date}", job_name=miner_stats_job.name, tags={ROUND_TAG: work.date}),
        ],
        [f"round_rollup_job + miner_stats_job for round {work.date}"],
    )


@schedule(
    cron_schedule="*/5 * * * *",
    job=open_round_job,
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
)
def round_schedule(context: ScheduleEvaluationContext, settings: ResourceParam[Settings]):
    when = context.scheduled_execution_time or datetime.now(UTC)
    identity = str(settings.miners.hotkey_file or settings.miners.metagraph_file or "validator")
    init = round_to_open(when, settings, identity)
    if init is None:
        return SkipReason("before today's trigger time")
    if settings.round.sensor_dry_run:
        context.log.info(f"[dry run] would open the round for {init:%Y-%m-%d %H}Z")
        return SkipReason("dry run")
    return RunRequest(run_key=round_run_key(init), partition_key=init.strftime("%Y-%m-%d"))


class RunCrashed(WeatherError):
    category = "run_failed"


def step_failure_sensor(
    context: RunFailureSensorContext, settings: ResourceParam[Settings], db: ResourceParam[Database]
):
    """Steps a failed run still held are retried (an attempt used), never left in_progress."""
    run = context.dagster_run
    s = forecast_steps.c
    with db.engine.connect() as conn:
        held = conn.execute(
            sa.select(forecast_steps).where(s.dagster_run_id == run.run_id, s.status == StepStatus.IN_PROGRESS.value)
        ).all()
    if settings.round.sensor_dry_run:
        context.log.info(f"[dry run] would schedule retries for {len(held)} step(s) of failed run {run.run_id}")
        return
    steps = step_log(settings, db)
    reason = RunCrashed(f"Dagster run {run.run_id} failed: {context.failure_event.message or 'process died'}")
    for row in held:
        key = StepKey(row.run_id, row.miner_uid, row.miner_hotkey, StepName(row.step_name), row.substep, row.lead_hours)
        steps.record_failure(key, reason, attempt=row.retry_count + 1)


def retire_partitions_sensor(
    context: SensorEvaluationContext, settings: ResourceParam[Settings], db: ResourceParam[Database]
):
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
            jobs=[advance_miners_job, score_batch_job, round_rollup_job, miner_stats_job],
            minimum_interval_seconds=interval,
            default_status=running,
        )(round_sensor),
        run_failure_sensor(default_status=running, minimum_interval_seconds=interval)(step_failure_sensor),
        sensor(minimum_interval_seconds=3600, default_status=running)(retire_partitions_sensor),
    ]


AUTOMATION_JOBS = [open_round_job, round_rollup_job, miner_stats_job, score_batch_job]
AUTOMATION_SCHEDULES = [round_schedule]
AUTOMATION_SENSORS = [round_sensor, step_failure_sensor, retire_partitions_sensor]
