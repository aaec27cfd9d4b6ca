"""Round scheduling, retention and concurrency settings (SPEC sections 1, 2 and 9)."""

from __future__ import annotations

from pydantic import Field

from weather_dagster.settings._base import SettingsSection


class RoundSettings(SettingsSection):
    trigger_hour_utc: int = Field(18, ge=0, le=23)
    trigger_jitter_max_minutes: int = Field(30, ge=0, le=360)
    gfs_cycle_hour_utc: int = Field(0, ge=0, le=18, multiple_of=6)
    previous_step_offset_hours: int = Field(6, ge=0, le=48)
    expire_after_days: float = Field(16.0, gt=0.0, le=90.0)
    # A lead still waiting for truth that is only late keeps its round open up to this long after the
    # lead was due (ERA5T has stalled for days); past it the round expires and the lead is recorded as
    # never having got truth.
    truth_late_limit_hours: float = Field(5 * 24.0, ge=0.0, le=24.0 * 60)
    partition_retention_days: int = Field(45, ge=16, le=3650)
    miner_http_pool_limit: int = Field(1, ge=1, le=64)
    scoring_pool_limit: int = Field(1, ge=1, le=64)
    sensor_dry_run: bool = False
    sensor_interval_s: int = Field(30, ge=1, le=3600)
    # Miners scored per batched scoring run (a Dagster run costs seconds of CPU to start).
    scoring_batch_size: int = Field(128, ge=1, le=256)
    # Threads scoring a batch's miners side by side, field by field (0 = one per CPU core); the
    # scores do not depend on it.
    scoring_threads: int = Field(0, ge=0, le=64)
    # Step execution. No broker: Dagster's multiprocess executor with at most this many step processes
    # per run (0 = one per CPU core). A broker URL (e.g. redis://host:6379/0) sends steps to Celery workers.
    executor_max_concurrent: int = Field(0, ge=0, le=256)
    celery_broker_url: str | None = Field(None, repr=False)
    # Where workers put step results; empty means the broker URL (Redis serves both).
    celery_backend_url: str | None = Field(None, repr=False)
    # Redis re-delivers an unacknowledged step task after this long; must exceed the longest step.
    celery_visibility_timeout_s: int = Field(6 * 3600, ge=60, le=7 * 86_400)
