"""Chain settings: where the metagraph comes from and how weights are set (issue 11, README "On the chain").

Off by default: the validator then reads the metagraph file and writes weights only to its database,
which is what demos, tests and an operator's dry days use. ``version_key`` defaults to the reference
validator's spec version (Gaia 2.9.96 -> 1000*2 + 10*9 + 96 = 2186): a key below the subnet's
``weights_version`` hyperparameter makes the extrinsic fail, so it must move with the reference.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from weather_dagster.settings._base import SettingsSection


class ChainSettings(SettingsSection):
    # Read the metagraph from the chain (instead of settings.miners.metagraph_file).
    metagraph_enabled: bool = False
    # Set weights on chain (the database publisher still records every weight set).
    weights_enabled: bool = False
    # Record what would be set (uids, u16 weights, block decision) without sending an extrinsic.
    dry_run: bool = False
    network: str = Field("finney", min_length=1, max_length=64)
    # A websocket endpoint overrides the network name (e.g. a local subtensor node).
    endpoint: str = Field("", max_length=256)
    netuid: int = Field(237, ge=0, le=65535)
    # Standard Bittensor wallet directory: <wallet_path>/<wallet_name>/hotkeys/<wallet_hotkey>.
    wallet_path: Path = Path("~/.bittensor/wallets")
    wallet_name: str = Field("default", min_length=1, max_length=128)
    wallet_hotkey: str = Field("default", min_length=1, max_length=128)
    version_key: int = Field(2186, ge=0)
    # How often the metagraph is re-read between rounds (hotkey changes cancel threads at their next step).
    metagraph_refresh_minutes: int = Field(30, ge=1, le=24 * 60)
    # A validator-permit holder that set weights within this many blocks is an active validator: no weight.
    active_validator_blocks: int = Field(500, ge=1)
    # Attempts at one weight set (chain errors and rate-limit waits), with backoff from core/retry.py.
    publish_max_attempts: int = Field(4, ge=1, le=50)
    # Seconds per block, to turn "blocks until the rate limit allows" into a wait.
    block_time_s: float = Field(12.0, gt=0.0, le=120.0)
    # Longest single wait for the rate limit before the attempt is recorded as given up.
    max_rate_limit_wait_s: float = Field(3600.0, ge=0.0, le=86_400.0)
    wait_for_finalization: bool = False
