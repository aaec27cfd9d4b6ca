"""The operator actions as Dagster jobs, so the UI can launch them (Launchpad: the job, then its config).

Each job is one op calling the plain function of ``operator.actions`` (the CLI calls the same one), so
the UI, the CLI and tests share one behaviour: idempotent, recorded in the step log. An operator's
mistake (no such round, a failed step) fails the run with the message that says what to do.
"""

from datetime import date

from dagster import (
    Config,
    Definitions,
    MetadataValue,
    OpExecutionContext,
    ResourceParam,
    in_process_executor,
    job,
    op,
)

from weather_dagster.db.engine import Database
from weather_dagster.operator import actions
from weather_dagster.operator.actions import ActionResult
from weather_dagster.operator.rounds import parse_round_date
from weather_dagster.scoring.inputs import ScoringInputs
from weather_dagster.settings import Settings
from weather_dagster.stats.weights import WeightPublisher

TAGS = {"weather/operator": "1"}


class RoundConfig(Config):
    round: str  # the round's init date, YYYY-MM-DD (UTC)


class MinerStepConfig(RoundConfig):
    uid: int
    step: str  # query, poll, manifest, day1 or era5
    lead_hours: int = 0  # the ERA5 lead, for era5 steps


class CancelConfig(RoundConfig):
    uid: int
    reason: str = ""


def _report(context: OpExecutionContext, result: ActionResult) -> None:
    context.log.info(result.line())
    context.add_output_metadata({"changed": result.changed, "result": MetadataValue.text(result.line())})


def _date(config: RoundConfig) -> date:
    return parse_round_date(config.round)


@op(tags=TAGS)
def retry_step_now_op(
    context: OpExecutionContext, config: MinerStepConfig, settings: ResourceParam[Settings], db: ResourceParam[Database]
) -> None:
    result = actions.retry_step_now(db.engine, settings, _date(config), config.uid, config.step, config.lead_hours)
    _report(context, result)


@op(tags=TAGS)
def cancel_miner_op(
    context: OpExecutionContext, config: CancelConfig, settings: ResourceParam[Settings], db: ResourceParam[Database]
) -> None:
    _report(context, actions.cancel_miner(db.engine, settings, _date(config), config.uid, config.reason))


@op(tags=TAGS)
def score_round_op(
    context: OpExecutionContext,
    config: RoundConfig,
    settings: ResourceParam[Settings],
    db: ResourceParam[Database],
    scoring_inputs: ResourceParam[ScoringInputs],
) -> None:
    result = actions.score_round(db.engine, settings, scoring_inputs, _date(config), dagster_run_id=context.run_id)
    _report(context, result)


@op(tags=TAGS)
def rerun_rollups_op(
    context: OpExecutionContext,
    config: RoundConfig,
    settings: ResourceParam[Settings],
    db: ResourceParam[Database],
    weight_publisher: ResourceParam[WeightPublisher],
) -> None:
    _report(context, actions.rerun_rollups(db.engine, settings, weight_publisher, _date(config)))


@job(
    tags=TAGS,
    executor_def=in_process_executor,
    description="Make one miner's open step due now (config: round, uid, step, lead_hours)",
)
def operator_retry_step_job() -> None:
    retry_step_now_op()


@job(
    tags=TAGS,
    executor_def=in_process_executor,
    description="Cancel a miner's thread in a round (config: round, uid, reason)",
)
def operator_cancel_miner_job() -> None:
    cancel_miner_op()


@job(
    tags=TAGS,
    executor_def=in_process_executor,
    description="Score (backfill) a past round from its frozen manifests (config: round)",
)
def operator_score_round_job() -> None:
    score_round_op()


@job(
    tags=TAGS,
    executor_def=in_process_executor,
    description="Re-run a round's rollups, stats, plots and weights (config: round)",
)
def operator_rollups_job() -> None:
    rerun_rollups_op()


# One op each: in process, so a launch costs no extra Python start-up (see orchestration/batching).
OPERATOR_JOBS = [operator_retry_step_job, operator_cancel_miner_job, operator_score_round_job, operator_rollups_job]
# Merged into the code location by definitions.py; the resources (settings, db, scoring_inputs,
# weight_publisher) come from the location's own.
OPERATOR_DEFINITIONS = Definitions(jobs=OPERATOR_JOBS)
