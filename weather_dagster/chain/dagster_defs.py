"""Dagster side of the chain: which metagraph and publisher resources, and the metagraph refresh job.

With ``chain.metagraph_enabled`` / ``chain.weights_enabled`` off (the default) nothing here is added
and the file metagraph and the database publisher stay in place. Nothing connects at load time: the
SDK client opens on the first call a run makes.
"""

from dataclasses import dataclass, field
from typing import Any

from dagster import OpExecutionContext, ResourceParam, ScheduleDefinition, job, op

from weather_dagster.chain.client import BittensorChain
from weather_dagster.chain.metagraph import ChainMetagraph, refresh_miners_table
from weather_dagster.chain.publisher import ChainWeightPublisher
from weather_dagster.db.engine import Database
from weather_dagster.miners.metagraph import MetagraphSource
from weather_dagster.settings import Settings


@op
def refresh_metagraph(
    context: OpExecutionContext, db: ResourceParam[Database], metagraph: ResourceParam[MetagraphSource]
) -> dict:
    """Re-read the metagraph between rounds so hotkey changes and deregistrations cancel threads early."""
    counts = refresh_miners_table(db.engine, metagraph.snapshot())
    context.log.info(f"metagraph refreshed: {counts}")
    return counts


@job(description="Re-read the subnet's neurons into the miners table (chain metagraph only).")
def refresh_metagraph_job():
    refresh_metagraph()


def refresh_cron(minutes: int) -> str:
    """Every ``minutes`` (whole hours above 59 minutes, rounded down)."""
    if minutes < 60:
        return f"*/{minutes} * * * *"
    return f"0 */{min(minutes // 60, 23)} * * *"


@dataclass
class ChainDefinitions:
    resources: dict[str, Any] = field(default_factory=dict)
    jobs: list = field(default_factory=list)
    schedules: list = field(default_factory=list)


def chain_definitions(settings: Settings, database: Database) -> ChainDefinitions:
    chain = settings.chain
    out = ChainDefinitions()
    if not (chain.metagraph_enabled or chain.weights_enabled):
        return out
    client = BittensorChain(chain)
    if chain.metagraph_enabled:
        out.resources["metagraph"] = ChainMetagraph(client, chain.netuid, settings.miners.max_miners)
        out.jobs.append(refresh_metagraph_job)
        out.schedules.append(
            ScheduleDefinition(
                name="refresh_metagraph_schedule",
                job=refresh_metagraph_job,
                cron_schedule=refresh_cron(chain.metagraph_refresh_minutes),
                execution_timezone="UTC",
            )
        )
    if chain.weights_enabled:
        out.resources["weight_publisher"] = ChainWeightPublisher(settings, database, client)
    return out
