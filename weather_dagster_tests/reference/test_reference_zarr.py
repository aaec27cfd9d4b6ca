"""ERA5 (ARCO-style) and climatology (WeatherBench-2-style) Zarr read over HTTP from loopback."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
import xarray as xr

from weather_dagster.core.errors import SourceError, TruthNotAvailable
from weather_dagster.reference.grid import Grid
from weather_dagster.reference.sources import ReferenceData
from weather_dagster.reference.synthetic.atmosphere import SyntheticAtmosphere
from weather_dagster.reference.synthetic.server import Fault
from weather_dagster.reference.synthetic.zarr_stores import era5_dataset, write_era5_zarr
from weather_dagster.reference.variables import VARIABLES
from weather_dagster_tests.support.fixtures_reference import REFERENCE_START
from weather_dagster_tests.support.reference_helpers import serving, settings_for

GRID = Grid(2.0)


def test_era5_fields_match_the_atmosphere(reference_settings) -> None:
    data = ReferenceData(reference_settings)
    truth = SyntheticAtmosphere(GRID)
    valid = REFERENCE_START + timedelta(days=3)
    source = data.era5()
    for name, level in (("2t", None), ("msl", None), ("z", 500), ("q", 1000), ("v", 50)):
        np.testing.assert_array_equal(source.field(name, level, valid), truth.field(name, level, valid))
    ds = data.load_era5(valid).dataset
    assert set(ds.data_vars) == set(VARIABLES) and ds["t"].dtype == np.float32
    assert ds["lat"].values[0] == 90.0 and ds["z"].attrs["units"] == "m2 s-2"


def test_era5_reads_one_chunk_per_variable(reference_settings, reference_server) -> None:
    ReferenceData(reference_settings).load_era5(REFERENCE_START + timedelta(days=2))
    chunk_reads = [r for r in reference_server.log.snapshot() if "/era5.zarr/" in r.path and r.path[-1].isdigit()]
    data_reads = [r for r in chunk_reads if r.path.split("/")[2] in {v.era5_name for v in VARIABLES.values()}]
    assert len(data_reads) == len(VARIABLES)  # 9 chunks, each with every level


def test_era5_probe(reference_settings, reference_tree) -> None:
    data = ReferenceData(reference_settings)
    last = reference_tree.era5_times[-1]
    assert data.era5_available(REFERENCE_START)
    assert data.era5_available(last)
    assert not data.era5_available(last + timedelta(days=1))
    assert not data.era5_available(REFERENCE_START + timedelta(hours=6))  # not a time in this store
    with pytest.raises(TruthNotAvailable):
        data.era5().field("2t", None, last + timedelta(days=1))


def test_era5_probe_uses_era5t_stop_and_finiteness(tmp_path) -> None:
    """Time axis ahead of the data (NaN) like ARCO: the attribute and a finite check decide."""
    times = [REFERENCE_START + timedelta(days=d) for d in range(3)]
    atmosphere = SyntheticAtmosphere(GRID)
    write_era5_zarr(tmp_path / "era5.zarr", atmosphere, times, era5t_stop=times[1])
    ds = era5_dataset(atmosphere, times)
    ds["2m_temperature"][1, 5, 5] = np.nan  # day 2 published but broken
    ds[["2m_temperature"]].to_zarr(tmp_path / "era5.zarr", mode="r+", zarr_format=2, consolidated=True)
    with serving(tmp_path) as server:
        data = ReferenceData(settings_for(server, tmp_path / "data", GRID))
        assert data.era5_available(times[0])
        assert not data.era5_available(times[1])  # NaN
        assert not data.era5_available(times[2])  # after valid_time_stop_era5t
        with pytest.raises(SourceError, match=r"NaN or infinite values in 2t") as info:
            data.load_era5(times[1])
        assert info.value.url.endswith("/era5.zarr")


def test_unconsolidated_zarr_is_refused_not_read_as_empty(tmp_path) -> None:
    write_era5_zarr(tmp_path / "era5.zarr", SyntheticAtmosphere(GRID), [REFERENCE_START], consolidated=False)
    with serving(tmp_path) as server:
        url = f"{server.base_url}/era5.zarr"
        silently_empty = xr.open_zarr(url, zarr_format=2, consolidated=False, chunks=None)  # what a naive reader gets
        assert len(silently_empty.data_vars) == 0
        data = ReferenceData(settings_for(server, tmp_path / "data", GRID))
        with pytest.raises(SourceError, match="consolidated") as info:
            data.era5_available(REFERENCE_START)
        assert info.value.url == url


def test_zarr_server_errors_name_the_url(reference_settings, reference_server) -> None:
    reference_server.faults["/era5.zarr/2m_temperature/"] = Fault(status=500)
    with pytest.raises(SourceError, match="reading 2m_temperature failed") as info:
        ReferenceData(reference_settings).load_era5(REFERENCE_START)
    assert info.value.url.endswith("/era5.zarr")
    reference_server.faults.clear()
    reference_server.faults["/climatology.zarr"] = Fault(status=404)
    with pytest.raises(SourceError, match="consolidated") as info:
        ReferenceData(reference_settings).load_climatology(152, 0)
    assert info.value.url.endswith("/climatology.zarr")


def test_climatology_slice_matches_the_atmosphere(reference_settings, reference_tree) -> None:
    data = ReferenceData(reference_settings)
    truth = SyntheticAtmosphere(GRID)
    day = reference_tree.climatology_days[2]
    source = data.climatology()
    for name, level in (("2t", None), ("z", 500), ("u", 250), ("q", 850)):
        np.testing.assert_array_equal(source.field(name, level, day, 12), truth.climatology(name, level, day, 12))
    with pytest.raises(SourceError, match="no dayofyear 1"):
        data.load_climatology(1, 0)
