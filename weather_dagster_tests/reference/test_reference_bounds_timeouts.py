"""Real-data bounds (per level, per-field quarantine), old GFS paths, and transfer timeouts on loopback."""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest
from dagster import DagsterInstance, materialize

from weather_dagster.core.errors import SourceError
from weather_dagster.dagster_defs.reference_assets import era5_truth
from weather_dagster.reference.canonical import REJECTED, check_dataset
from weather_dagster.reference.gfs import gfs_url
from weather_dagster.reference.grid import Grid
from weather_dagster.reference.sources import ReferenceData
from weather_dagster.reference.synthetic.atmosphere import SyntheticAtmosphere
from weather_dagster.reference.synthetic.server import Fault
from weather_dagster.reference.synthetic.zarr_stores import era5_dataset, write_era5_zarr
from weather_dagster.reference.variables import GRAVITY, PRESSURE_LEVELS_HPA, R_DRY, geopotential_range
from weather_dagster_tests.support.reference_helpers import serving, settings_for, write_custom_gfs

GRID = Grid(2.0)
WHEN = datetime(2025, 6, 1, tzinfo=UTC)
FAST = {"http_timeout_s": 0.5, "http_progress_window_s": 0.5, "http_progress_min_bytes": 4096, "http_blip_retries": 0}


def _era5_store(tmp_path, edit=None):
    """A one-time ARCO-like store; ``edit(ds)`` may change its values before they are rewritten."""
    atmosphere = SyntheticAtmosphere(GRID)
    write_era5_zarr(tmp_path / "era5.zarr", atmosphere, [WHEN])
    if edit:
        ds = era5_dataset(atmosphere, [WHEN])
        names = edit(ds)
        ds[names].to_zarr(tmp_path / "era5.zarr", mode="r+", zarr_format=2, consolidated=True)


# -- bounds ---------------------------------------------------------------------------------------


def test_geopotential_bounds_admit_a_deep_low_and_follow_the_level() -> None:
    deep_low = R_DRY * 290.0 * np.log(930.0 / 1000.0)  # z at 1000 hPa under a 930 hPa low, ~-6000
    low, high = geopotential_range(1000)
    assert deep_low < -5000.0 and low < deep_low < high  # the old fixed -5000 rejected it
    typhoon_tip = R_DRY * 300.0 * np.log(870.0 / 1000.0)  # the record low
    assert low < typhoon_tip
    z500_low, z500_high = geopotential_range(500)
    assert z500_low < 4600 * GRAVITY and z500_high > 6000 * GRAVITY  # observed z500 range, with margin
    assert z500_low > 0  # a z500 of 0 is broken data, not weather
    bounds = [geopotential_range(level) for level in PRESSURE_LEVELS_HPA]
    assert all(a[0] > b[0] and a[1] > b[1] for a, b in itertools.pairwise(bounds))


def test_era5_with_a_deep_low_at_1000_hpa_loads(tmp_path) -> None:
    def deepen(ds):
        ds["geopotential"].loc[{"level": 1000}] = (
            ds["geopotential"].sel(level=1000).where(ds["latitude"] != 20.0, -6200.0)
        )
        return ["geopotential"]

    _era5_store(tmp_path, deepen)
    with serving(tmp_path) as server:
        data = ReferenceData(settings_for(server, tmp_path / "data", GRID))
        z1000 = data.era5().field("z", 1000, WHEN)
        assert float(z1000.min()) == pytest.approx(-6200.0)
        assert data.load_era5(WHEN).dataset.attrs[REJECTED] == {}


def test_an_implausible_field_is_quarantined_and_named_the_rest_still_read(tmp_path) -> None:
    def overheat(ds):
        ds["temperature"].loc[{"level": 500}] = ds["temperature"].sel(level=500) + 200.0  # ~450 K at 500 hPa
        return ["temperature"]

    _era5_store(tmp_path, overheat)
    with serving(tmp_path) as server:
        data = ReferenceData(settings_for(server, tmp_path / "data", GRID))
        result = data.load_era5(WHEN)
        assert list(result.dataset.attrs[REJECTED]) == ["t500"]
        problems = check_dataset(result.dataset, data.grid)
        assert "t500" in problems["units"] and "nan" not in problems
        with pytest.raises(SourceError, match=r"t500 was rejected .* outside its plausible range") as info:
            data.era5().field("t", 500, WHEN)
        assert info.value.url.endswith("/era5.zarr")
        truth = SyntheticAtmosphere(GRID)
        np.testing.assert_array_equal(data.era5().field("t", 850, WHEN), truth.field("t", 850, WHEN))
        np.testing.assert_array_equal(data.era5().field("2t", None, WHEN), truth.field("2t", None, WHEN))


def test_gfs_field_out_of_range_stops_only_that_field(tmp_path) -> None:
    def kelvin_twice(messages):  # 2 m temperature sent as K + 300: a units fault in one message
        return [
            replace(m, values=m.values + 300.0) if (m.idx_name, m.type_of_level) == ("TMP", "heightAboveGround") else m
            for m in messages
        ]

    write_custom_gfs(tmp_path, GRID, WHEN, 0, kelvin_twice)
    with serving(tmp_path) as server:
        data = ReferenceData(settings_for(server, tmp_path / "data", GRID))
        analysis = data.gfs_analysis()
        with pytest.raises(SourceError, match=r"2t was rejected"):
            analysis.field("2t", None, WHEN)
        np.testing.assert_allclose(
            analysis.field("msl", None, WHEN), SyntheticAtmosphere(GRID).field("msl", None, WHEN), rtol=1e-4
        )


# -- GFS paths ------------------------------------------------------------------------------------


def test_gfs_paths_before_v16_have_no_atmos_part(tmp_path) -> None:
    base = "https://noaa-gfs-bdp-pds.s3.amazonaws.com"
    assert gfs_url(base, datetime(2021, 3, 22, 6, tzinfo=UTC), 0) == f"{base}/gfs.20210322/06/gfs.t06z.pgrb2.0p25.f000"
    assert "/12/atmos/" in gfs_url(base, datetime(2021, 3, 22, 12, tzinfo=UTC), 0)  # GFS v16's first cycle
    assert "/00/atmos/" in gfs_url(base, datetime(2021, 3, 23, tzinfo=UTC), 0)
    old = datetime(2020, 6, 1, tzinfo=UTC)
    path = write_custom_gfs(tmp_path, GRID, old, 0)
    assert "atmos" not in path.parts
    with serving(tmp_path) as server:
        data = ReferenceData(settings_for(server, tmp_path / "data", GRID))
        np.testing.assert_allclose(
            data.gfs_analysis().field("z", 500, old), SyntheticAtmosphere(GRID).field("z", 500, old), rtol=1e-4
        )
        assert server.log.matching("/gfs/gfs.20200601/00/gfs.t00z.pgrb2.0p25.f000")


# -- timeouts -------------------------------------------------------------------------------------

ERA5_CHUNK = "/era5.zarr/2m_temperature/"


def _timed(fn):
    started = time.monotonic()
    try:
        return fn(), time.monotonic() - started
    except SourceError as exc:
        return exc, time.monotonic() - started


def test_zarr_chunk_sent_slowly_but_steadily_passes(tmp_path) -> None:
    _era5_store(tmp_path)
    with serving(tmp_path) as server:
        server.faults[ERA5_CHUNK] = Fault(rate_bytes_per_s=25_000)
        data = ReferenceData(settings_for(server, tmp_path / "data", GRID, **FAST))
        result, elapsed = _timed(lambda: data.load_era5(WHEN))
        assert not isinstance(result, Exception), result
        assert elapsed > 2 * FAST["http_timeout_s"]  # longer than the idle timeout: no cap on the whole read
        assert next(r.bytes_sent for r in server.log.matching(ERA5_CHUNK)) > 30_000


def test_zarr_chunk_that_stalls_fails_at_the_idle_timeout(tmp_path) -> None:
    _era5_store(tmp_path)
    with serving(tmp_path) as server:
        server.faults[ERA5_CHUNK] = Fault(stall_after=2000, stall_s=6.0)
        data = ReferenceData(settings_for(server, tmp_path / "data", GRID, **FAST))
        error, elapsed = _timed(lambda: data.load_era5(WHEN))
        assert isinstance(error, SourceError) and "reading 2m_temperature failed" in str(error)
        assert "Timeout" in str(error) or "timed out" in str(error).lower()
        assert elapsed < 4.0  # the stall lasts 6 s: the idle timeout (0.5 s) ended it


def test_zarr_chunk_that_trickles_fails_at_the_progress_deadline(tmp_path) -> None:
    _era5_store(tmp_path)
    with serving(tmp_path) as server:
        server.faults[ERA5_CHUNK] = Fault(rate_bytes_per_s=1000)  # a byte every ms: never idle, far too slow
        data = ReferenceData(settings_for(server, tmp_path / "data", GRID, **FAST))
        error, elapsed = _timed(lambda: data.load_era5(WHEN))
        assert isinstance(error, SourceError) and "transfer too slow" in str(error)
        assert elapsed < 4.0


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [
        (Fault(rate_bytes_per_s=1_000_000), "passes"),
        (Fault(stall_after=2000, stall_s=6.0), r"timed out: no idle-read progress for 0.5s"),
        (Fault(rate_bytes_per_s=1000), r"transfer too slow"),
    ],
    ids=["slow-steady", "stall", "trickle"],
)
def test_gfs_range_reads_use_the_same_rules(tmp_path, fault, outcome) -> None:
    path = write_custom_gfs(tmp_path, GRID, WHEN, 0)
    with serving(tmp_path) as server:
        url_path = "/gfs/" + str(path.relative_to(tmp_path / "gfs"))
        server.faults[url_path + ".idx"] = Fault()  # first match wins: the .idx is served normally
        server.faults[url_path] = fault
        data = ReferenceData(settings_for(server, tmp_path / "data", GRID, **FAST))
        result, elapsed = _timed(lambda: data.load_gfs_analysis(WHEN))
        if outcome == "passes":
            assert not isinstance(result, Exception), result
            assert elapsed > 2 * FAST["http_timeout_s"]
        else:
            assert isinstance(result, SourceError)
            assert result.url.endswith(".f000") and re.search(outcome, str(result))
            assert elapsed < 4.0


def test_era5_asset_with_an_implausible_field_materializes_and_its_check_names_it(tmp_path) -> None:
    def bad_wind(ds):
        ds["u_component_of_wind"].loc[{"level": 250}] = ds["u_component_of_wind"].sel(level=250) * 100.0
        return ["u_component_of_wind"]

    _era5_store(tmp_path, bad_wind)
    with serving(tmp_path) as server:
        settings = settings_for(server, tmp_path / "data", GRID)
        resources = {"reference": ReferenceData(settings), "settings": settings}
        result = materialize(
            [era5_truth], partition_key="2025-06-01", resources=resources, instance=DagsterInstance.ephemeral()
        )
    assert result.success  # the other 68 fields are cached and usable
    [materialization] = result.asset_materializations_for_node(era5_truth.op.name)
    assert list(materialization.metadata["rejected_fields"].value) == ["u250"]
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks["units_range"].passed and "u250" in checks["units_range"].metadata["problem"].value
    assert checks["no_nan"].passed and checks["grid"].passed
