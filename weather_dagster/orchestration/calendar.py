"""Partition date <-> GFS init time: the one rule every asset, sensor and schedule uses.

A round is keyed by the date of its GFS init; the init is that date at ``round.gfs_cycle_hour_utc``
(00, 06, 12 or 18 Z). Writing the hour in one place is what keeps a 06Z deployment's scores,
snapshot, weights and ERA5 gate finding the round the schedule opened.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from weather_dagster.settings import Settings

DATE_FORMAT = "%Y-%m-%d"


def init_time_of(partition_date: str, settings: Settings) -> datetime:
    """The GFS init time (UTC) of the round whose partition key is ``partition_date``."""
    day = datetime.strptime(partition_date, DATE_FORMAT).replace(tzinfo=UTC)
    return day + timedelta(hours=settings.round.gfs_cycle_hour_utc)


def partition_date_of(init_time: datetime) -> str:
    """The daily partition key of the round initialised at ``init_time``."""
    aware = init_time if init_time.tzinfo is None else init_time.astimezone(UTC)  # naive = UTC (SQLite)
    return aware.strftime(DATE_FORMAT)
