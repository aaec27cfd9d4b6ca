"""The batched scoring run the round sensor launches: ``score_batch_job``, one op for many miners.

A single op, so the job runs on the in-process executor: the run worker scores in its own process
instead of starting a step process that imports the code location again (with a Celery broker set,
the scoring step goes to a worker instead: see ``executors.batch_executor``). The round's status
follows the batch's outcomes at the end of the run.
"""

# No `from __future__ import annotations`: Dagster inspects the real annotations of `context`.
import json
import time

import sqlalchemy as sa
from dagster import (
    AssetMaterialization,
    Config,
    Failure,
    JobDefinition,
    OpExecutionContext,
    in_process_executor,
    job,
    op,
)

from weather_dagster.core.states import StepStatus
from weather_dagster.dagster_defs.executors import batch_executor, celery_executor_config
from weather_dagster.dagster_defs.partitions import miner_round_key
from weather_dagster.dagster_defs.pools import KIND_TAG, SCORING_POOL, SCORING_RUN_KIND
from weather_dagster.dagster_defs.resources import DatabaseResource, ScoringInputsResource, SettingsResource, step_log
from weather_dagster.db.engine import Database
from weather_dagster.db.schema import forecast_steps
from weather_dagster.db.types import utcnow
from weather_dagster.orchestration.batching import RunJob
from weather_dagster.orchestration.rounds import sync_round
from weather_dagster.settings import Settings


class ScoreBatchConfig(Config):
    run_id: int
    date: str
    kind: str  # "day1" or "era5"
    uids: list[int]


@op(pool=SCORING_POOL)
def score_batch(
    context: OpExecutionContext,
    config: ScoreBatchConfig,
    settings: SettingsResource,
    db: DatabaseResource,
    scoring_inputs: ScoringInputsResource,
):
    """Score several miners in one run (a run costs seconds of CPU); each outcome is its own.

    A failure of one miner is recorded in its own step rows by the scoring service and never stops
    the others; each miner scored is reported as a materialization of its own partition.
    """
    from weather_dagster.scoring.batch import era5_batch_scorer
    from weather_dagster.scoring.service import run_day1, run_era5

    steps = step_log(settings, db)
    scorer = run_day1 if config.kind == "day1" else run_era5
    if config.kind == "era5":  # field-major: each truth and climatology field read once for the batch
        scorer = era5_batch_scorer(
            db.engine, steps, settings, scoring_inputs, config.run_id, config.uids, dagster_run_id=context.run.run_id
        )
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
    sync_round(db.engine, config.run_id, settings, utcnow())


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


@job(name=RunJob.SCORE_BATCH.value, tags={KIND_TAG: SCORING_RUN_KIND}, executor_def=in_process_executor)
def score_batch_job():
    """One op; ``scoring_definitions`` swaps in the Celery executor when a broker is configured."""
    score_batch()


_DISTRIBUTED: dict[str, JobDefinition] = {}


def score_batch_job_for(settings: Settings) -> JobDefinition:
    """The job the code location serves: in-process, or one Celery copy per broker configuration.

    The same object goes to the scoring domain and to the round sensor's targets (Dagster rejects two
    different definitions of one job name).
    """
    if not settings.round.celery_broker_url:
        return score_batch_job
    key = repr(sorted(celery_executor_config(settings).items()))
    if key not in _DISTRIBUTED:
        _DISTRIBUTED[key] = score_batch_job.with_executor_def(batch_executor(settings))
    return _DISTRIBUTED[key]
