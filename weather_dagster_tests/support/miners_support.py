"""Shared builders for the miner tests and benchmark: fleet config and validator settings on loopback."""

from __future__ import annotations

from pathlib import Path

from weather_dagster.miners.demo.behaviours import Behaviour
from weather_dagster.miners.demo.fleet import FleetConfig
from weather_dagster.miners.keys import derived_seed
from weather_dagster.settings import Settings, load_settings

TEST_GRID_DEG = 10.0
# A shorter horizon than the 40 steps of production keeps the fleet's CPU small; every code path is the same.
TEST_STEPS = 8
VALIDATOR_SEED = derived_seed("tests", "validator")


def fleet_config(behaviours: list[Behaviour], **overrides) -> FleetConfig:
    values = {
        "count": len(behaviours),
        "grid_deg": TEST_GRID_DEG,
        "steps": TEST_STEPS,
        "behaviours": dict(enumerate(behaviours)),
        "ready_after_s": 0.2,
        "slow_delay_s": 0.2,
        "drip_interval_s": 0.3,
        "oversized_metadata_bytes": 2 * 1024 * 1024,
    }
    values.update(overrides)
    return FleetConfig(**values)


def validator_settings(tmp_path: Path, db_url: str, metagraph: Path | None = None, **miners) -> Settings:
    """Settings a loopback round needs: retries in fractions of a second, loopback allow-listed."""
    miner_settings = {
        "allow_private_hosts": ("127.0.0.1",),
        "hotkey_seed": VALIDATOR_SEED,
        "metagraph_file": metagraph,
        "manifest_freeze_window_s": 60.0,
        "read_deadline_s": 1.5,
        "max_metadata_bytes": 1024 * 1024,
        "http_concurrency": 16,
        "forecast_steps": TEST_STEPS,
        **miners,
    }
    return load_settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        miners=miner_settings,
        retry={
            "query_backoff_s": (0.2, 0.2, 0.2),
            "poll_first_delay_s": 0.1,
            "poll_interval_s": 0.15,
            "poll_max_attempts": 400,
            "initiate_fetch_timeout_s": 5.0,
            "poll_timeout_s": 5.0,
            "kerchunk_timeout_s": 10.0,
        },
    )
