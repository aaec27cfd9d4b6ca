"""Daily gate assets that carry lineage from date-keyed truth to the (date x miner) scores.

Dagster has no offset mapping from a multi-partition to a daily asset, so ``era5_truth_gate`` (keyed
by init date) depends on the ERA5 valid dates init + 1 .. init + 10 through a time-window mapping,
and ``era5_score`` depends on the gate through the ``date`` dimension. Materializing the gate records
which leads are ready by the one readiness rule (``orchestration.readiness``).
"""

# No `from __future__ import annotations`: Dagster inspects the real annotation of `context`.
from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    TimeWindowPartitionMapping,
    asset,
)

from weather_dagster.dagster_defs.partitions import round_dates
from weather_dagster.dagster_defs.resources import ReferenceResource, SettingsResource
from weather_dagster.db.types import utcnow
from weather_dagster.orchestration.calendar import init_time_of
from weather_dagster.orchestration.readiness import ready_leads

ERA5_VALID_DAYS = 10  # leads 24 h .. 240 h of a 00Z init fall on init + 1 .. init + 10 days


@asset(
    partitions_def=round_dates,
    deps=[
        AssetDep(
            AssetKey("era5_truth"),
            partition_mapping=TimeWindowPartitionMapping(
                start_offset=1, end_offset=ERA5_VALID_DAYS, allow_nonexistent_upstream_partitions=True
            ),
        ),
        # Climatology slices are static (day-of-year x hour); the gate reads the ones its leads need.
        AssetDep(AssetKey("era5_climatology"), partition_mapping=AllPartitionMapping()),
    ],
    group_name="scoring",
    description="Which ERA5 leads of this round have truth ready (clock + published), by the one readiness rule.",
)
def era5_truth_gate(
    context: AssetExecutionContext, settings: SettingsResource, reference: ReferenceResource
) -> MaterializeResult:
    init = init_time_of(context.partition_key, settings)
    leads = ready_leads(init, settings, utcnow(), reference.era5_available)
    return MaterializeResult(metadata={"ready_leads": ", ".join(map(str, leads)) or "none", "count": len(leads)})
