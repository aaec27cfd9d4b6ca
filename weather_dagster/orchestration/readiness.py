"""When truth for a lead can be scored: the one rule, used by the sensors, the scorer and the demo.

A round expires ``round.expire_after_days`` after its init, later only while a lead still waits for
truth that is late: up to ``round.truth_late_limit_hours`` after that lead was due.

A lead L of a round initialised at I is ready when both hold:
- the clock has passed ``I + L + delay`` (the reference's 5 d 6 h; zero in test mode), and
- the truth source says the valid time ``I + L`` is published (ERA5T's ``valid_time_stop_era5t``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from weather_dagster.settings import Settings


def truth_due_time(valid_time: datetime, settings: Settings) -> datetime:
    """When ERA5 at ``valid_time`` is expected to exist (the sources' lag is measured from here)."""
    return valid_time + timedelta(hours=settings.era5_truth_delay_hours)


def era5_due_time(init_time: datetime, lead_hours: int, settings: Settings) -> datetime:
    return truth_due_time(init_time + timedelta(hours=lead_hours), settings)


def era5_lead_ready(
    init_time: datetime,
    lead_hours: int,
    settings: Settings,
    now: datetime,
    truth_available: Callable[[datetime], bool],
) -> bool:
    if now < era5_due_time(init_time, lead_hours, settings):
        return False
    return truth_available(init_time + timedelta(hours=lead_hours))


def ready_leads(
    init_time: datetime, settings: Settings, now: datetime, truth_available: Callable[[datetime], bool]
) -> list[int]:
    """The ERA5 leads of a round that may be scored now (asks the source only for clock-due leads)."""
    return [
        lead
        for lead in settings.scoring.era5_lead_hours
        if era5_lead_ready(init_time, lead, settings, now, truth_available)
    ]


def round_expires_at(init_time: datetime, waiting_leads: Iterable[int], settings: Settings) -> datetime:
    """When a round still open expires, given the ERA5 leads still waiting for truth."""
    limit = timedelta(hours=settings.round.truth_late_limit_hours)
    late = [era5_due_time(init_time, lead, settings) + limit for lead in waiting_leads]
    return max([init_time + timedelta(days=settings.round.expire_after_days), *late])
