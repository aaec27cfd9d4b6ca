"""Read-only HTTP API and page settings (issue 15): where it listens and how much one client may ask."""

from __future__ import annotations

from pydantic import Field, model_validator

from weather_dagster.settings._base import SettingsSection


class ApiSettings(SettingsSection):
    # Loopback by default: exposing the API is a deliberate choice (a reverse proxy, or an explicit host).
    host: str = Field("127.0.0.1", min_length=1, max_length=255)
    port: int = Field(8090, ge=0, le=65535)
    # Token bucket per client address: a steady rate and the burst a client may spend at once.
    rate_limit_per_s: float = Field(20.0, gt=0.0, le=100_000.0)
    rate_limit_burst: int = Field(40, ge=1, le=100_000)
    # Buckets kept at most (the oldest idle ones are dropped first), so many addresses cannot grow memory.
    rate_limit_clients: int = Field(10_000, ge=1, le=1_000_000)
    # A read-only API needs no request bodies; anything larger than this is refused with 413.
    max_request_bytes: int = Field(16 * 1024, ge=0, le=16 * 1024 * 1024)
    default_page_size: int = Field(100, ge=1, le=5000)
    max_page_size: int = Field(500, ge=1, le=5000)

    @model_validator(mode="after")
    def _default_within_cap(self) -> ApiSettings:
        if self.default_page_size > self.max_page_size:
            raise ValueError("default_page_size: must not exceed max_page_size")
        return self
