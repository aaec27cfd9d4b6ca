"""Reference assets, checks and the ERA5 sensor, materialized for real against the loopback server."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster import DagsterInstance, Definitions, RunRequest, SkipReason, build_sensor_context, materialize

from weather_dagster.dagster_defs.reference_assets import (
    era5_climatology,
    era5_dates_to_request,
    era5_truth,
    gfs_analysis,
    gfs_forecast,
    reference_definitions,
)
from weather_dagster.definitions import build_definitions
from weather_dagster.reference.sources import ReferenceData
from weather_dagster.reference.synthetic.server import Fault
from weather_dagster.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


def test_definitions_validate_with_the_dagster_cli(tmp_path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "WEATHER_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "All code locations passed validation" in proc.stderr + proc.stdout


def _resources(settings):
    return {"reference": ReferenceData(settings), "settings": settings}


@pytest.mark.parametrize(
    ("asset", "key", "fields"),
    [
        (gfs_analysis, "2025-06-01-06:00", 69),
        (gfs_forecast, "2025-06-01", 69),
        (era5_truth, "2025-06-03", 69),
        (era5_climatology, "153-12", 69),
    ],
    ids=["gfs_analysis", "gfs_forecast", "era5_truth", "era5_climatology"],
)
def test_assets_materialize_with_metadata_and_passing_checks(reference_settings, asset, key, fields) -> None:
    instance = DagsterInstance.ephemeral()
    result = materialize([asset], partition_key=key, resources=_resources(reference_settings), instance=instance)
    assert result.success
    [materialization] = result.asset_materializations_for_node(asset.op.name)
    meta = materialization.metadata
    assert meta["fields"].value == fields
    assert meta["source_url"].value.startswith("http://127.0.0.1:")
    assert meta["downloaded"].value is True
    assert set(meta["variables"].value) == {"2t", "10u", "10v", "msl", "t", "u", "v", "q", "z"}
    assert 180 < meta["variables"].value["2t"]["min"] < meta["variables"].value["2t"]["max"] < 340
    assert fields * 91 * 180 * 4 <= meta["bytes_decoded"].value < fields * 91 * 180 * 4 + 10_000  # + coordinates
    if asset in (gfs_analysis, gfs_forecast):
        assert 0 < meta["bytes_read"].value < fields * 91 * 180 * 4  # 16-bit GRIB: about half of float32
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    data_checks = {"grid", "units_range", "no_nan"}
    assert set(checks) == (data_checks | {"source_lag"} if asset is era5_truth else data_checks)
    assert all(checks[name].passed for name in data_checks)
    if asset is era5_truth:  # the synthetic ARCO store ends in 2025: far behind the clock, a warning
        assert meta["truth_source"].value == "arco" and meta["lag_hours_arco"].value > 24 * 300
        assert not checks["source_lag"].passed
    # Materialized again: read from the cache, nothing downloaded.
    again = materialize([asset], partition_key=key, resources=_resources(reference_settings), instance=instance)
    assert again.asset_materializations_for_node(asset.op.name)[0].metadata["downloaded"].value is False


def test_asset_fails_with_the_source_error(reference_settings, reference_server) -> None:
    reference_server.faults["/gfs/"] = Fault(status=404)
    result = materialize(
        [gfs_analysis],
        partition_key="2025-06-01-00:00",
        resources=_resources(reference_settings),
        raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0]
    assert "HTTP 404" in str(failure.event_specific_data.error)
    assert "gfs.t00z.pgrb2.0p25.f000" in str(failure.event_specific_data.error)


def test_era5_dates_to_request_follows_the_probe(reference_settings, reference_tree) -> None:
    data = ReferenceData(reference_settings)
    last = reference_tree.era5_times[-1]
    now = last + timedelta(days=3)
    dates, stamp = era5_dates_to_request(data, now, 20, materialized={"2025-06-02"})
    expected = [t.strftime("%Y-%m-%d") for t in reference_tree.era5_times if t.strftime("%Y-%m-%d") != "2025-06-02"]
    assert dates == expected
    assert stamp == last.strftime("%Y%m%dT23")


def test_era5_sensor_requests_arrived_dates(tmp_path, reference_urls, reference_tree) -> None:
    last = reference_tree.era5_times[-1]
    hindcast = (datetime.now(UTC) - last).days - 2  # "now" a couple of days after the last ERA5 date
    settings = load_settings(
        data_dir=tmp_path / "data",
        test_mode=True,
        hindcast_days=hindcast,
        reference={**reference_urls, "era5_sensor_lookback_days": 5},
    )
    defs = build_definitions(settings)
    sensor = next(s for s in defs.sensors if s.name == "era5_truth_sensor")
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(
            instance=instance, definitions=defs, resources={"reference": ReferenceData(settings)}
        )
        result = sensor.evaluate_tick(context)
    requests = result.run_requests
    assert requests and all(isinstance(r, RunRequest) for r in requests)
    keys = [r.partition_key for r in requests]
    assert keys[-1] == last.strftime("%Y-%m-%d")
    assert all(key <= last.strftime("%Y-%m-%d") for key in keys)
    assert len(set(r.run_key for r in requests)) == len(requests)


def test_era5_sensor_skips_when_probe_fails(tmp_path, reference_urls, reference_server) -> None:
    settings = load_settings(data_dir=tmp_path / "data", reference=reference_urls)
    reference_server.faults["/era5.zarr"] = Fault(status=404)
    reference = reference_definitions(settings)
    defs = Definitions(
        assets=reference.assets, sensors=reference.sensors, resources={"settings": settings, **reference.resources}
    )
    sensor = reference.sensors[0]
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(
            instance=instance, definitions=defs, resources={"reference": ReferenceData(settings)}
        )
        result = sensor.evaluate_tick(context)
    assert not result.run_requests
    assert "ERA5 probe failed" in (result.skip_message or "")
    assert SkipReason  # imported for readers: the sensor returns a SkipReason here
