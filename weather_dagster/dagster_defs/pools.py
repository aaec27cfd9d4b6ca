"""Dagster concurrency pools: one for miner HTTP traffic, one for heavy scoring.

Assets declare ``pool=MINER_HTTP_POOL`` or ``pool=SCORING_POOL``; the limits live in Dagster's instance
storage (``dagster instance concurrency set NAME N``). :func:`apply_pool_limits` writes the limits from
the settings, so an operator sizes a bigger machine with ``WEATHER_ROUND__MINER_HTTP_POOL_LIMIT`` /
``WEATHER_ROUND__SCORING_POOL_LIMIT`` instead of remembering two CLI calls.
"""

from __future__ import annotations

from dagster import DagsterInstance

from weather_dagster.settings import Settings

MINER_HTTP_POOL = "miner_http"
SCORING_POOL = "scoring"
# Run tag limited to one run at a time by dagster.postgres.yaml (`concurrency.runs.tag_concurrency_limits`):
# the run that opens a round carries {RUN_KIND_TAG: ROUND_RUN_KIND}.
RUN_KIND_TAG = "weather/kind"
ROUND_RUN_KIND = "round"


def pool_limits(settings: Settings) -> dict[str, int]:
    """The slot count per pool that the settings ask for."""
    return {
        MINER_HTTP_POOL: settings.round.miner_http_pool_limit,
        SCORING_POOL: settings.round.scoring_pool_limit,
    }


def apply_pool_limits(instance: DagsterInstance, settings: Settings) -> dict[str, int]:
    """Set each pool's limit on ``instance`` (idempotent; the same as ``dagster instance concurrency set``)."""
    limits = pool_limits(settings)
    for pool, limit in limits.items():
        instance.event_log_storage.set_concurrency_slots(pool, limit)
    return limits


def current_pool_limits(instance: DagsterInstance) -> dict[str, int]:
    """The limits the instance enforces now, for pools that have one."""
    return {limit.name: limit.limit for limit in instance.event_log_storage.get_pool_limits()}
