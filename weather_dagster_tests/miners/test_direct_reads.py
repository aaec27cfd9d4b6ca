"""The hot-path reads that skip zarr and xarray return exactly what the xarray path returns.

- a verified miner field read straight from its decoded chunk (``VerifiedForecast._read_direct``)
  equals ``xarray.open_zarr``'s decoding of it, fill-value masking included, in either byte order;
  a field with CF scale/offset attributes still goes through xarray;
- a cached truth field read from its raw chunk file (``cache.RawFields``) equals the xarray read,
  for surface, pressure-level and lead-indexed (GFS forecast) arrays; absent labels still raise.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest
import xarray as xr

from weather_dagster.miners.manifest import file_hash
from weather_dagster.miners.reader import ForecastLayout, VerifiedForecast, VerifiedStore
from weather_dagster.reference.cache import RAW_FIELDS, PartitionCache
from weather_dagster.reference.canonical import canonical_dataset, field_of
from weather_dagster.reference.grid import Grid
from weather_dagster.settings import load_settings

INIT = datetime(2026, 1, 10, tzinfo=UTC)
GRID = Grid(15.0)


def _store_files(fill, dtype: str = "<f4", attrs: dict | None = None) -> tuple[dict[str, bytes], np.ndarray]:
    from weather_dagster.miners.demo.forecast import ForecastStore

    store = ForecastStore(GRID, INIT, 0, steps=2)
    files = {key: store.file(key) for key in [*store.metadata, *store.chunk_keys()]}
    meta = json.loads(files[".zmetadata"])
    meta["metadata"]["2t/.zarray"].update(fill_value=fill, dtype=dtype)
    meta["metadata"]["2t/.zattrs"].update(attrs or {})
    files[".zmetadata"] = json.dumps(meta).encode()
    values = np.frombuffer(files["2t/0.0.0"], dtype="<f4").reshape(GRID.shape).copy()
    values[2, 3] = values[4, 5] = 250.0  # cells equal to a fill value of 250
    files["2t/0.0.0"] = values.astype(dtype).tobytes()
    return files, values


def _open(files: dict[str, bytes]) -> VerifiedForecast:
    settings = load_settings(miners={"forecast_steps": 2})
    store = VerifiedStore(
        {key: file_hash(key, data) for key, data in files.items()},
        lambda key, _max: files[key],
        max_metadata_bytes=1 << 24,
        max_chunk_bytes=1 << 26,
    )
    return VerifiedForecast.open(store, ForecastLayout.from_settings(settings), INIT, max_chunk_bytes=1 << 26)


@pytest.mark.parametrize("dtype", ["<f4", ">f4", "<f8"])
@pytest.mark.parametrize("fill", [None, "NaN", 250.0, 0.0, "Infinity"])
def test_a_direct_field_read_equals_xarrays_decoding(fill, dtype):
    files, _ = _store_files(fill, dtype)
    forecast = _open(files)
    assert "2t" in forecast._direct
    direct = forecast.field("2t", None, 6)
    via_xarray = np.asarray(forecast.dataset["2t"].isel(time=0).values)
    assert direct.dtype.isnative and direct.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(direct, via_xarray)
    assert np.isnan(direct[2, 3]) == (fill == 250.0)
    forecast.close()


def test_a_field_with_scale_and_offset_is_read_through_xarray():
    files, values = _store_files(None, attrs={"scale_factor": 2.0, "add_offset": 1.0})
    forecast = _open(files)
    assert "2t" not in forecast._direct
    np.testing.assert_allclose(forecast.field("2t", None, 6), values * 2.0 + 1.0, rtol=1e-6)
    forecast.close()


def test_raw_cached_fields_equal_the_xarray_read(tmp_path):
    rng = np.random.default_rng(0)
    variables, levels = ("2t", "t"), (500, 850)
    fields = {("2t", None): rng.random(GRID.shape, dtype=np.float32)}
    fields.update({("t", lvl): rng.random(GRID.shape, dtype=np.float32) + lvl for lvl in levels})
    parts = [canonical_dataset(fields, variables, levels, GRID), canonical_dataset(fields, variables, levels, GRID)]
    parts[1] = parts[1] * 2
    gfs = xr.concat(parts, dim="lead_hours").assign_coords(lead_hours=("lead_hours", np.array([6, 12], np.int32)))
    cache = PartitionCache(tmp_path)
    for kind, dataset in (("era5", parts[0]), ("gfs_forecast", gfs)):
        cache.get_or_create(kind, "k", lambda dataset=dataset: (dataset, {}))
        lazy, loaded = cache.read(kind, "k", load=False).dataset, cache.read(kind, "k").dataset
        assert lazy.encoding[RAW_FIELDS].arrays.keys() == {"2t", "t"}
        selection = {"lead_hours": 12} if kind == "gfs_forecast" else {}
        for name, level in fields:
            raw = field_of(lazy, name, level, **selection)
            np.testing.assert_array_equal(raw, field_of(loaded, name, level, **selection))
            assert raw.dtype == np.float32 and raw.shape == GRID.shape
        with pytest.raises(KeyError, match="level 700"):
            field_of(lazy, "t", 700, **selection)
