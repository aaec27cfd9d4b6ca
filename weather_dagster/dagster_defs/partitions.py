"""Partition definitions shared by every asset (SPEC section 2).

The miner dimension is the uid as digits only (a ``|`` or ``,`` in a dynamic key silently breaks
multi-partitions and UI backfills); the hotkey lives in the database.
"""

from __future__ import annotations

import re

from dagster import (
    DailyPartitionsDefinition,
    DynamicPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    MultiToSingleDimensionPartitionMapping,
    StaticPartitionsDefinition,
    TimeWindowPartitionsDefinition,
)

PARTITIONS_START = "2025-01-01"
MINER_PARTITIONS_NAME = "miner"

# Rounds by 00Z init date; end_offset=1 makes today's round exist before the day is over.
round_dates = DailyPartitionsDefinition(start_date=PARTITIONS_START, end_offset=1)
# ERA5 truth by valid date (00Z).
era5_dates = DailyPartitionsDefinition(start_date=PARTITIONS_START, end_offset=1)
# GFS analysis by 6-hourly valid time.
gfs_analysis_times = TimeWindowPartitionsDefinition(
    start=PARTITIONS_START + "-00:00", cron_schedule="0 */6 * * *", fmt="%Y-%m-%d-%H:%M", end_offset=1
)
miners = DynamicPartitionsDefinition(name=MINER_PARTITIONS_NAME)
miner_rounds = MultiPartitionsDefinition({"date": round_dates, "miner": miners})
# A (date x miner) asset's dependency on a daily one, through the date dimension.
BY_DATE = MultiToSingleDimensionPartitionMapping(partition_dimension_name="date")
# ERA5 climatology by (day of year, hour). The keys are those of ``reference.climatology.climatology_key``
# (a test holds them equal), spelled here so loading the partitions does not import xarray.
CLIMATOLOGY_HOURS = (0, 6, 12, 18)
climatology_slices = StaticPartitionsDefinition(
    [f"{day:03d}-{hour:02d}" for day in range(1, 367) for hour in CLIMATOLOGY_HOURS]
)

_UID = re.compile(r"^(?:[0-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-5])$")


def miner_key(uid: int) -> str:
    key = str(int(uid))
    if not _UID.match(key):
        raise ValueError(f"miner uid must be 0..255, got {uid!r}")
    return key


def miner_round_key(date: str, uid: int) -> MultiPartitionKey:
    return MultiPartitionKey({"date": date, "miner": miner_key(uid)})


def parse_miner_round_key(key: MultiPartitionKey | str) -> tuple[str, int]:
    """(init date, uid) from a ``date|miner`` key, validating the uid."""
    if isinstance(key, MultiPartitionKey):
        parts = key.keys_by_dimension
        date, miner = parts["date"], parts["miner"]
    else:
        date, _, miner = str(key).partition("|")
    if not _UID.match(miner):
        raise ValueError(f"bad miner partition key {miner!r}: expected a uid 0..255")
    return date, int(miner)
