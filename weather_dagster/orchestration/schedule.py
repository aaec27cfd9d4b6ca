"""When a round opens: daily at the trigger hour plus a per-day jitter, once per GFS cycle.

The jitter is a deterministic function of the date and the validator's identity, so every tick of
the schedule on that day agrees on it (a restart does not draw a new one), while validators of the
subnet spread their load over the jitter window as the reference's random jitter does.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from weather_dagster.settings import Settings


def jitter_minutes(date: str, identity: str, max_minutes: int) -> int:
    if max_minutes <= 0:
        return 0
    digest = hashlib.sha256(f"{identity}|{date}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (max_minutes + 1)


def round_init_time(day: datetime, settings: Settings) -> datetime:
    """The GFS cycle a round opened on ``day`` forecasts from (shifted back in hindcast mode)."""
    init = datetime(day.year, day.month, day.day, settings.round.gfs_cycle_hour_utc, tzinfo=UTC)
    return init - timedelta(days=settings.hindcast_days) if settings.test_mode else init


def round_to_open(now: datetime, settings: Settings, identity: str) -> datetime | None:
    """The init time of the round to open at ``now``, or None before today's trigger time."""
    now = now.astimezone(UTC)
    date = now.strftime("%Y-%m-%d")
    trigger = datetime(now.year, now.month, now.day, settings.round.trigger_hour_utc, tzinfo=UTC) + timedelta(
        minutes=jitter_minutes(date, identity, settings.round.trigger_jitter_max_minutes)
    )
    if now < trigger:
        return None
    return round_init_time(now, settings)
