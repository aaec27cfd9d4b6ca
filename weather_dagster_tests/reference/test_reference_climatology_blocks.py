"""Climatology read chunk-aligned against a store chunked like the real WeatherBench 2 one.

The store holds days 151..156 (two real day-chunks: 151-153, 154-156) at all four hours, chunked
(3 hour, 3 dayofyear, 1 level, whole grid), served over loopback HTTP. Requests are counted from
the server's log; bytes decoded are whole chunks (zarr decodes a chunk entirely to read any of it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from weather_dagster.reference.cache import PartitionCache
from weather_dagster.reference.climatology import KIND, climatology_key, hours_in_use
from weather_dagster.reference.grid import Grid
from weather_dagster.reference.sources import ReferenceData
from weather_dagster.reference.synthetic.atmosphere import SyntheticAtmosphere
from weather_dagster.reference.synthetic.server import SyntheticHttpServer
from weather_dagster.reference.synthetic.zarr_stores import write_climatology_zarr
from weather_dagster.reference.variables import VARIABLES
from weather_dagster_tests.support.reference_helpers import settings_for

GRID = Grid(5.0)
DAYS = tuple(range(151, 157))
FIELDS_PER_SLOT = 4 + 5 * 13
FIELD_BYTES = GRID.shape[0] * GRID.shape[1] * 4
CHUNK_BYTES = 9 * FIELD_BYTES  # 3 hours x 3 days x 1 level x grid, float32
IN_USE = ("151-00", "152-00", "153-00", "151-12", "152-12", "153-12")  # block of 152-00 at hours 0, 12


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("climatology-real-chunks")
    write_climatology_zarr(root / "climatology.zarr", SyntheticAtmosphere(GRID), DAYS, real_chunks=True)
    server = SyntheticHttpServer(root).start()
    try:
        yield server
    finally:
        server.stop()


def _chunk_reads(server: SyntheticHttpServer) -> list[str]:
    names = {v.era5_name for v in VARIABLES.values()}
    return [r.path for r in server.log.snapshot() if r.path.split("/")[2] in names and r.path[-1].isdigit()]


def _data(server: SyntheticHttpServer, tmp_path: Path) -> ReferenceData:
    server.log.clear()
    return ReferenceData(settings_for(server, tmp_path / "data", GRID))


def test_the_store_is_chunked_like_the_real_one(real_store) -> None:
    ds = xr.open_zarr(f"{real_store.base_url}/climatology.zarr", zarr_format=2, consolidated=True, chunks=None)
    t = ds["temperature"]
    assert t.dims == ("hour", "dayofyear", "level", "latitude", "longitude")
    assert t.encoding["chunks"] == (3, 3, 1, *GRID.shape)
    assert ds["2m_temperature"].encoding["chunks"] == (3, 3, *GRID.shape)


def test_one_slot_fetches_each_chunk_once_and_caches_the_neighbours_in_use(real_store, tmp_path) -> None:
    data = _data(real_store, tmp_path)
    result = data.load_climatology(152, 0)
    reads = _chunk_reads(real_store)
    assert len(reads) == FIELDS_PER_SLOT and len(set(reads)) == len(reads)  # one request per chunk
    assert result.info["chunks_read"] == FIELDS_PER_SLOT
    assert result.info["chunk_bytes_decoded"] == FIELDS_PER_SLOT * CHUNK_BYTES
    assert sorted(result.info["neighbours"]) == sorted(k for k in IN_USE if k != "152-00")
    assert not data.cache.is_valid(KIND, "152-06")  # hour 6 is not scored: not prefetched

    real_store.log.clear()
    truth = SyntheticAtmosphere(GRID)
    source = data.climatology()
    for key in IN_USE:
        day, hour = int(key[:3]), int(key[4:])
        for name, level in (("2t", None), ("z", 500), ("q", 1000), ("v", 50)):
            expected = truth.climatology(name, level, day, hour)
            np.testing.assert_allclose(source.field(name, level, day, hour), expected, rtol=1e-6)
    assert real_store.log.snapshot() == []  # every slot in use came from that one block read


def test_before_and_after_requests_and_bytes_per_slot(real_store, tmp_path) -> None:
    """The per-slot selection (the old read) against the block read, over the six slots in use."""
    url = f"{real_store.base_url}/climatology.zarr"
    real_store.log.clear()
    ds = xr.open_zarr(url, zarr_format=2, consolidated=True, chunks=None)
    for key in IN_USE:
        day, hour = int(key[:3]), int(key[4:])
        for spec in VARIABLES.values():
            ds[spec.era5_name].sel(dayofyear=day, hour=hour).load()
    before = len(_chunk_reads(real_store))
    assert before == len(IN_USE) * FIELDS_PER_SLOT  # every slot fetches (and decodes) the nine-slot chunks again

    data = _data(real_store, tmp_path)
    decoded = sum(data.load_climatology(int(k[:3]), int(k[4:])).info.get("chunk_bytes_decoded", 0) for k in IN_USE)
    after = len(_chunk_reads(real_store))
    assert after == FIELDS_PER_SLOT
    assert before == 6 * after
    assert decoded == FIELDS_PER_SLOT * CHUNK_BYTES  # before: 6x that (9 slots decoded per slot kept)


def test_a_neighbour_someone_else_is_building_is_skipped_not_waited_for(real_store, tmp_path) -> None:
    data = _data(real_store, tmp_path)
    other = PartitionCache(data.cache.root)
    with other.claim(KIND, ["153-00"]) as held:
        assert held == {"153-00"}
        result = data.load_climatology(152, 0)
        assert "153-00" not in result.info["neighbours"] and len(result.info["neighbours"]) == 4
    assert not data.cache.is_valid(KIND, "153-00")
    real_store.log.clear()
    field = data.climatology().field("t", 850, 153, 0)
    np.testing.assert_allclose(field, SyntheticAtmosphere(GRID).climatology("t", 850, 153, 0), rtol=1e-6)
    assert len(_chunk_reads(real_store)) == FIELDS_PER_SLOT  # built by itself, later


def test_the_last_hour_chunk_and_the_second_day_chunk(real_store, tmp_path) -> None:
    """Hour 18 sits alone in its hour chunk (4 hours in chunks of 3); days 154-156 form the next chunk."""
    data = _data(real_store, tmp_path)
    result = data.load_climatology(155, 18)
    assert result.info["block_slots"] == [climatology_key(d, 18) for d in (154, 155, 156)]
    assert result.info["chunks_read"] == FIELDS_PER_SLOT and result.info["neighbours"] == []
    # Zarr v2 stores an edge chunk padded to the full chunk shape and decodes all of it.
    assert result.info["chunk_bytes_decoded"] == FIELDS_PER_SLOT * CHUNK_BYTES
    np.testing.assert_allclose(
        data.climatology().field("u", 250, 155, 18), SyntheticAtmosphere(GRID).climatology("u", 250, 155, 18), rtol=1e-6
    )


def test_hours_in_use_follow_the_cycle_and_leads() -> None:
    assert hours_in_use(0, (*range(24, 241, 24), 12)) == {0, 12}
    assert hours_in_use(18, (24, 12)) == {18, 6}
    assert hours_in_use(0, (9,)) == {6}  # rounded down to the 6-hourly slot, as the reference picks it
