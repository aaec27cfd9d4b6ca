"""Keys, the safety perimeter and the fiber client's key cache, each on its own."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from weather_dagster.core.errors import ManifestError, SafetyViolation
from weather_dagster.miners.demo.behaviours import Behaviour
from weather_dagster.miners.demo.fleet import DemoFleet
from weather_dagster.miners.fiber_client import FiberClient, MinerAddress
from weather_dagster.miners.keys import (
    KeyLoadError,
    derived_seed,
    keypair_from_seed,
    signed_headers,
    signing_message,
    validator_keypair,
    verify_signature,
    write_wallet_file,
)
from weather_dagster.miners.manifest import build_manifest, file_hash, manifest_hash, verify_manifest
from weather_dagster.miners.perimeter import check_store_key, check_store_url, miner_base_url
from weather_dagster.settings import load_settings
from weather_dagster_tests.support.miners_support import fleet_config, validator_settings

SEED = derived_seed("transport-test")


def test_wallet_hotkey_file_and_seed_give_the_same_signer(tmp_path: Path) -> None:
    keypair = keypair_from_seed(SEED)
    wallet = tmp_path / "wallets" / "validator" / "hotkeys" / "default"
    write_wallet_file(wallet, keypair, SEED)
    from_file = validator_keypair(load_settings(miners={"hotkey_file": wallet}))
    from_seed = validator_keypair(load_settings(miners={"hotkey_seed": SEED}))
    assert from_file.ss58_address == from_seed.ss58_address == keypair.ss58_address
    headers = signed_headers(from_file, "5MinerHotkey", "uuid-1")
    message = signing_message(headers["nonce"], "5MinerHotkey", "uuid-1")
    assert verify_signature(keypair.ss58_address, message, headers["signature"])
    assert not verify_signature(keypair.ss58_address, message + "x", headers["signature"])


def test_bad_wallet_files_are_refused_without_quoting_secrets(tmp_path: Path) -> None:
    wallet = tmp_path / "hotkey"
    wallet.write_text(json.dumps({"secretSeed": "0x" + SEED, "ss58Address": "5SomebodyElse"}))
    with pytest.raises(KeyLoadError, match="does not match") as info:
        validator_keypair(load_settings(miners={"hotkey_file": wallet}))
    assert SEED not in str(info.value)
    wallet.write_bytes(b"$NACL\x00encrypted")
    with pytest.raises(KeyLoadError, match="encrypted keyfiles"):
        validator_keypair(load_settings(miners={"hotkey_file": wallet}))
    with pytest.raises(KeyLoadError, match="no validator hotkey"):
        validator_keypair(load_settings())


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.2:9000/forecasts/a.zarr/", "not the miner's registered address"),
        ("http://8.8.8.8:9001/forecasts/a.zarr/", "not the miner's registered address"),
        ("file:///etc/passwd", "scheme"),
        ("http://user:pw@8.8.8.8:9000/forecasts/a.zarr/", "credentials"),
        ("/forecasts/a.zarr/?x=1", "query"),
        ("/forecasts/../secrets/", "under /forecasts/"),  # urljoin resolves the dots first
        ("/other/a.zarr/", "under /forecasts/"),
        ("/forecasts/", "under /forecasts/"),
    ],
)
def test_store_urls_outside_the_miner_address_are_refused(url: str, problem: str) -> None:
    settings = load_settings()
    with pytest.raises(SafetyViolation, match=problem):
        check_store_url(url, "8.8.8.8", 9000, settings)


def test_store_url_rules_accept_the_registered_address_and_refuse_private_hosts() -> None:
    public = load_settings()
    assert check_store_url("/forecasts/job.zarr", "8.8.8.8", 9000, public) == "http://8.8.8.8:9000/forecasts/job.zarr/"
    assert (
        check_store_url("http://8.8.8.8:9000/forecasts/job.zarr/", "8.8.8.8", 9000, public)
        == "http://8.8.8.8:9000/forecasts/job.zarr/"
    )
    for host in ("127.0.0.1", "10.0.0.5", "192.168.1.2", "169.254.169.254", "::1", "localhost", "0.0.0.0"):
        with pytest.raises(SafetyViolation, match="not allow-listed"):
            miner_base_url(host, 9000, public)
    allowed = load_settings(miners={"allow_private_hosts": ("127.0.0.1",)})
    assert miner_base_url("127.0.0.1", 9000, allowed) == "http://127.0.0.1:9000"
    with pytest.raises(SafetyViolation):
        miner_base_url("127.0.0.2", 9000, allowed)  # the allow-list names hosts exactly
    for key in ("../x", "/abs", "a//b", "a/./b", "a\\b"):
        with pytest.raises(SafetyViolation):
            check_store_key(key)


def test_manifest_rules() -> None:
    miner = keypair_from_seed(derived_seed("m"))
    other = keypair_from_seed(derived_seed("o"))
    hashes = {".zmetadata": file_hash(".zmetadata", b"{}"), "2t/0.0.0": file_hash("2t/0.0.0", b"x")}
    manifest = build_manifest(hashes, miner.ss58_address)
    signature = ("0x" + miner.sign(manifest).hex()).encode()
    parsed = verify_manifest(manifest, signature, manifest_hash(manifest), miner.ss58_address, max_keys=10)
    assert parsed["files"] == hashes
    assert verify_manifest(manifest, miner.sign(manifest), manifest_hash(manifest), miner.ss58_address, max_keys=10)
    cases = [
        (manifest, signature, "0" * 64, miner.ss58_address, 10, "claimed verification_hash"),
        (manifest, signature, manifest_hash(manifest), other.ss58_address, 10, "wrong signer"),
        (
            manifest,
            ("0x" + other.sign(manifest).hex()).encode(),
            manifest_hash(manifest),
            miner.ss58_address,
            10,
            "signature",
        ),
        (manifest, signature, manifest_hash(manifest), miner.ss58_address, 1, "cap"),
    ]
    for body, sig, claimed, signer, max_keys, problem in cases:
        with pytest.raises(ManifestError, match=problem):
            verify_manifest(body, sig, claimed, signer, max_keys=max_keys)
    evil = build_manifest({"../etc/passwd": "0" * 64, ".zmetadata": "0" * 64}, miner.ss58_address)
    with pytest.raises(SafetyViolation):
        verify_manifest(evil, miner.sign(evil), manifest_hash(evil), miner.ss58_address, max_keys=10)


def test_key_cache_reuses_keys_and_rehandshakes_when_the_miner_forgot(tmp_path: Path) -> None:
    with DemoFleet(fleet_config([Behaviour.GOOD])) as fleet:
        miner = fleet.miners[0]
        settings = validator_settings(tmp_path, "sqlite://")
        address = MinerAddress(0, miner.keypair.ss58_address, "127.0.0.1", miner.port)

        async def scenario() -> list[int]:
            counts = []
            async with FiberClient(settings, validator_keypair(settings)) as client:
                payload = {"data": {"job_id": "nope"}}
                await client.call(address, "/weather-poll-job-status", payload, timeout_s=5)
                await client.call(address, "/weather-poll-job-status", payload, timeout_s=5)
                counts.append(len(miner.keys))  # one handshake for two calls
                miner.keys.clear()  # the miner restarted: "No symmetric key found"
                answer = await client.call(address, "/weather-poll-job-status", payload, timeout_s=5)
                counts.append(len(miner.keys))
                assert answer["status"] == "not_found"
            short = load_settings(
                **{**settings.model_dump(), "miners": {**settings.miners.model_dump(), "symmetric_key_ttl_s": 1e-6}}
            )
            async with FiberClient(short, validator_keypair(short)) as client:
                await client.call(address, "/weather-poll-job-status", payload, timeout_s=5)
                await client.call(address, "/weather-poll-job-status", payload, timeout_s=5)
                counts.append(len(miner.keys))  # a key older than the TTL is re-made
            return counts

        assert asyncio.run(scenario()) == [1, 1, 3]


def _metadata(**changes) -> bytes:
    from datetime import UTC, datetime

    from weather_dagster.miners.demo.forecast import ForecastStore
    from weather_dagster.reference.grid import Grid

    store = ForecastStore(Grid(10.0), datetime(2026, 11, 20, tzinfo=UTC), 1, steps=40)
    document = json.loads(store.metadata[".zmetadata"])
    for key, value in changes.items():
        name, field = key.split("__")
        document["metadata"][f"{name}/.zarray"][field] = value
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"2t__dtype": "|O"}, "dtype"),
        ({"t__compressor": {"id": "pickle"}}, "codec"),
        ({"q__filters": [{"id": "pickle"}]}, "codec"),
        ({"z__chunks": [1, 13, 19, 36]}, "one 2-D field per chunk"),
        ({"u__shape": [40, 13, 19, 37]}, "expected grid"),
        ({"time__shape": [41]}, "coordinate time"),
        ({"lat__shape": [18]}, "expected grid"),  # the fields keep 19 rows: they no longer match
        ({"lat__shape": [1]}, "latitude-longitude grid"),
        ({"msl__order": "F"}, "C-ordered"),
    ],
)
def test_metadata_is_checked_before_any_array_exists(changes: dict, problem: str) -> None:
    from weather_dagster.core.errors import InvalidDataError
    from weather_dagster.miners.reader import ForecastLayout, check_metadata

    layout = ForecastLayout.from_settings(load_settings())
    grid = check_metadata(_metadata(), layout, expected_grid=None, max_chunk_bytes=1 << 20)
    assert grid.shape == (19, 36)
    with pytest.raises(InvalidDataError, match=problem):
        check_metadata(_metadata(**changes), layout, expected_grid=None, max_chunk_bytes=1 << 20)
    with pytest.raises(SafetyViolation, match="chunk size cap"):
        check_metadata(_metadata(), layout, expected_grid=None, max_chunk_bytes=1024)


def test_unit_spellings() -> None:
    from weather_dagster.miners.reader import units_match

    assert units_match("m s**-1", "m s-1") and units_match("m/s", "m s-1") and units_match("K", "K")
    assert units_match("m**2 s**-2", "m2 s-2") and units_match("kg/kg", "kg kg-1")
    assert not units_match("degC", "K") and not units_match("hPa", "Pa") and not units_match("m", "m2 s-2")


def test_miners_serve_command_starts_and_stops(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    import httpx

    metagraph = tmp_path / "metagraph.json"
    command = [sys.executable, "-m", "weather_dagster.cli", "miners", "serve", "--count", "2", "--grid-deg", "10"]
    env = {**os.environ, "WEATHER_DATA_DIR": str(tmp_path / "data")}
    process = subprocess.Popen(
        [*command, "--metagraph", str(metagraph)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        for _ in range(300):
            if metagraph.exists() or process.poll() is not None:
                break
            time.sleep(0.1)
        miners = json.loads(metagraph.read_text())["miners"]
        assert [m["uid"] for m in miners] == [0, 1] and len({m["hotkey"] for m in miners}) == 2
        answer = httpx.get(f"http://127.0.0.1:{miners[1]['port']}/public-encryption-key", timeout=10)
        assert "BEGIN PUBLIC KEY" in answer.json()["public_key"]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "fleet_requests: 1" in output
    assert (tmp_path / "data" / "demo" / "validator_hotkey.json").exists()


def test_demo_forecast_error_grows_with_lead_and_shrinks_with_skill() -> None:
    from datetime import UTC, datetime, timedelta

    import numpy as np

    from weather_dagster.miners.demo.forecast import ForecastStore
    from weather_dagster.reference.grid import Grid
    from weather_dagster.reference.synthetic.atmosphere import SyntheticAtmosphere

    grid, init = Grid(5.0), datetime(2026, 11, 20, tzinfo=UTC)
    truth = SyntheticAtmosphere(grid)

    def rmse(skill: float, lead: int) -> float:
        forecast = ForecastStore(grid, init, 7, skill=skill).field("z", 500, lead)
        return float(np.sqrt(np.mean((forecast - truth.field("z", 500, init + timedelta(hours=lead))) ** 2)))

    assert rmse(0.8, 24) < rmse(0.8, 120) < rmse(0.8, 240)
    assert rmse(0.95, 240) < rmse(0.8, 240) < rmse(0.5, 240)
    assert rmse(1.0, 240) < 1e-3  # a perfect miner is the truth
