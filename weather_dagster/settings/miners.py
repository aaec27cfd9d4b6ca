"""Miner transport and safety-perimeter settings (SPEC section 6)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from weather_dagster.settings._base import SettingsSection


class MinerSettings(SettingsSection):
    max_miners: int = Field(256, ge=1, le=256)
    # Validator identity: a Bittensor wallet hotkey file, or a secret seed (hex) for demos and tests.
    hotkey_file: Path | None = None
    hotkey_seed: str | None = Field(None, repr=False)
    # Where the metagraph snapshot comes from when no chain adapter is configured.
    metagraph_file: Path | None = None
    symmetric_key_ttl_s: float = Field(7200.0, gt=0.0, le=5 * 3600.0)
    manifest_freeze_window_s: float = Field(7200.0, gt=0.0, le=7 * 86_400.0)
    # Hosts (e.g. "127.0.0.1") that may be contacted although loopback or private; empty in production.
    allow_private_hosts: tuple[str, ...] = ()
    max_response_bytes: int = Field(1024 * 1024, ge=1024)
    max_metadata_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_store_keys: int = Field(20_000, ge=1)
    max_chunk_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    http_concurrency: int = Field(32, ge=1, le=1024)
    # Chunks of a miner's store read ahead of scoring (verified and decoded in the background; still
    # one request at a time per store). Memory: this many decoded fields per open forecast.
    store_read_ahead_chunks: int = Field(2, ge=1, le=8)
    # Forecast layout every miner must deliver (SPEC section 6): steps x step hours, no T+0.
    forecast_steps: int = Field(40, ge=1, le=400)
    forecast_step_hours: int = Field(6, ge=1, le=24)
    # Whole-response deadline for miner and store reads: a slow drip of bytes is refused, not waited on.
    read_deadline_s: float = Field(30.0, gt=0.0, le=3600.0)
    # Demo fleet: grid of the synthetic forecasts and the first loopback port (0 = ephemeral ports).
    demo_grid_deg: float = Field(1.5, gt=0.0, le=30.0)
    demo_base_port: int = Field(0, ge=0, le=65000)
