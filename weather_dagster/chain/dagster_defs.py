"""Dagster side of the chain: which metagraph and publisher resources, and the metagraph refresh job.

With ``chain.metagraph_enabled`` / ``chain.weights_enabled`` off (the default) nothing here is added
and the file metagraph and the database publisher stay in place. Nothing connects at load time: the
SDK client opens on the first call a run makes, and the chain modules are imported only when enabled.
"""

# No `from __future__ import annotations`: Dagster inspects the real annotations of `context`.
from dagster import Definitions, OpExecutionContext, ScheduleDefinition, in_process_executor, job, op

from weather_dagster.dagster_defs.resources import DatabaseResource, MetagraphResource
from weather_dagster.db.engine import Database
from weather_dagster.settings import Settings


@op
def refresh_metagraph(context: OpExecutionContext, db: DatabaseResource, metagraph: MetagraphResource) -> dict:
    """Re-read the metagraph between rounds so hotkey changes and deregistrations cancel threads early."""
    from weather_dagster.chain.metagraph import refresh_miners_table

    counts = refresh_miners_table(db.engine, metagraph.snapshot())
    context.log.info(f"metagraph refreshed: {counts}")
    return counts


@job(
    description="Re-read the subnet's neurons into the miners table (chain metagraph only).",
    executor_def=in_process_executor,
)
def refresh_metagraph_job():
    refresh_metagraph()


def refresh_cron(minutes: int) -> str:
    """Every ``minutes`` (whole hours above 59 minutes, rounded down)."""
    if minutes < 60:
        return f"*/{minutes} * * * *"
    return f"0 */{min(minutes // 60, 23)} * * *"


def chain_definitions(settings: Settings, database: Database) -> Definitions:
    """The chain's job, schedule and the resources that replace the file metagraph / database publisher."""
    chain = settings.chain
    if not (chain.metagraph_enabled or chain.weights_enabled):
        return Definitions(resources={})
    from weather_dagster.chain.client import BittensorChain

    client = BittensorChain(chain)
    resources, jobs, schedules = {}, [], []
    if chain.metagraph_enabled:
        from weather_dagster.chain.metagraph import ChainMetagraph

        resources["metagraph"] = ChainMetagraph(client, chain.netuid, settings.miners.max_miners)
        jobs.append(refresh_metagraph_job)
        schedules.append(
            ScheduleDefinition(
                name="refresh_metagraph_schedule",
                job=refresh_metagraph_job,
                cron_schedule=refresh_cron(chain.metagraph_refresh_minutes),
                execution_timezone="UTC",
            )
        )
    if chain.weights_enabled:
        from weather_dagster.chain.publisher import ChainWeightPublisher

        resources["weight_publisher"] = ChainWeightPublisher(settings, database, client)
    return Definitions(jobs=jobs, schedules=schedules, resources=resources)
