"""Retry and timeout settings (SPEC section 5). Defaults reproduce the reference validator."""

from __future__ import annotations

from pydantic import Field, model_validator

from weather_dagster.settings._base import SettingsSection


class RetrySettings(SettingsSection):
    query_max_attempts: int = Field(3, ge=1, le=100)
    query_backoff_s: tuple[float, ...] = Field((60.0, 300.0, 900.0), min_length=1)
    poll_max_attempts: int = Field(20, ge=1, le=10_000)
    poll_interval_s: float = Field(300.0, ge=0.0, le=86_400.0)
    poll_first_delay_s: float = Field(300.0, ge=0.0, le=86_400.0)
    day1_max_attempts: int = Field(3, ge=1, le=100)
    day1_backoff_s: tuple[float, ...] = Field((300.0, 600.0, 1200.0), min_length=1)
    era5_max_attempts: int = Field(5, ge=1, le=100)
    era5_backoff_s: tuple[float, ...] = Field((3600.0,), min_length=1)
    download_max_attempts: int = Field(6, ge=1, le=100)
    download_base_backoff_s: float = Field(300.0, ge=0.0, le=86_400.0)
    download_max_backoff_s: float = Field(6 * 3600.0, ge=0.0, le=7 * 86_400.0)
    download_jitter_fraction: float = Field(0.2, ge=0.0, le=1.0)
    # Truth not yet published is a wait, not an attempt: how often to look again.
    truth_recheck_s: float = Field(3600.0, ge=1.0, le=7 * 86_400.0)
    # Timeouts per call (seconds); a timed-out call is retried with the timeout doubled up to the cap.
    initiate_fetch_timeout_s: float = Field(30.0, gt=0.0, le=600.0)
    poll_timeout_s: float = Field(15.0, gt=0.0, le=600.0)
    kerchunk_timeout_s: float = Field(45.0, gt=0.0, le=600.0)
    timeout_cap_factor: float = Field(4.0, ge=1.0, le=64.0)
    # A store read whose connection is refused or reset (the reference miner's server restarts every
    # 1000 requests) is tried again within the step after each of these pauses, then backs off as a step.
    store_read_reconnect_s: tuple[float, ...] = Field((0.5, 1.0), max_length=10)
    # A step left in_progress longer than this by a worker that died is claimable again.
    step_lease_s: float = Field(1800.0, ge=10.0, le=7 * 86_400.0)
    # In test mode every backoff and poll interval is multiplied by this, so a hindcast runs in minutes.
    test_mode_time_scale: float = Field(0.01, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _backoffs_non_negative(self) -> RetrySettings:
        for name in ("query_backoff_s", "day1_backoff_s", "era5_backoff_s", "store_read_reconnect_s"):
            if any(v < 0 for v in getattr(self, name)):
                raise ValueError(f"{name}: every backoff must be >= 0 seconds")
        return self
