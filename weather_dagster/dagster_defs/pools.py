"""Dagster concurrency pools (one for miner HTTP traffic, one for heavy scoring) and the run tags.

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
# Run tags. The kind tag is limited to one run at a time for ROUND_RUN_KIND by dagster.postgres.yaml
# (`concurrency.runs.tag_concurrency_limits`): the run that opens a round carries {KIND_TAG: "round"}.
KIND_TAG = "weather/kind"
ROUND_TAG = "weather/round"  # the round's partition date, or "all" for the miner pass
FINAL_TAG = "weather/final"  # "1" on the final rollup of a settled round
ROUND_RUN_KIND = "round"
SCORING_RUN_KIND = "scoring"


def run_tags(round_date: str, kind: str | None = None, final: bool = False) -> dict[str, str]:
    """The tags a sensor-requested run carries, which the sensors filter their run lookups on."""
    tags = {ROUND_TAG: round_date}
    if kind:
        tags[KIND_TAG] = kind
    if final:
        tags[FINAL_TAG] = "1"
    return tags


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
