"""Verified reads of a miner's forecast store (SPEC section 6).

:class:`VerifiedStore` is a read-only Zarr store that ``xarray.open_zarr`` uses directly: every key
it returns, metadata included, must be listed in the frozen manifest and hash-match it, else
ManifestError. :class:`VerifiedForecast` implements ``ForecastSource`` on top: it checks the
consolidated metadata (shapes, dtypes, chunking, codecs, units, dims) *before* any array is
allocated, then the coordinate values, then serves one float32 (nlat, nlon) field per call.
Nothing from a miner is unpickled or evaluated: object dtypes and unknown codecs are refused.
Zarr itself is shown only the arrays scoring reads, without codecs: every chunk is decoded by
``miners.decoding`` under the bound of its declared chunk shape, so a bomb or a lie about sizes
costs at most one chunk's worth of memory, and any decoding failure is ``invalid_data`` naming the key.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import xarray as xr
from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, Store, SuffixByteRequest
from zarr.core.buffer import Buffer, BufferPrototype

from weather_dagster.core.errors import InvalidDataError, ManifestError, SafetyViolation
from weather_dagster.miners.decoding import ChunkSpec, decode_chunk, decoding, load_json, zarr_view
from weather_dagster.miners.manifest import file_hash
from weather_dagster.miners.perimeter import check_store_key
from weather_dagster.reference.grid import AnyGrid, CoordinateGrid, Grid
from weather_dagster.reference.variables import VARIABLES
from weather_dagster.settings import Settings

METADATA_SUFFIXES = (".zmetadata", ".zarray", ".zattrs", ".zgroup", "zarr.json")
# Numeric dtypes only (never object or structured); either byte order, as numpy reads both.
_NUMERIC = ("f4", "f8", "i4", "i8", "i2", "M8[ns]", "m8[ns]")
ALLOWED_DTYPES = {f"{order}{kind}" for order in "<>" for kind in _NUMERIC} | {"|i1"}
FIELD_DTYPES = {"<f4", "<f8", ">f4", ">f8"}
# A miner grid may be any regular-ish layout the reference validator interpolates (Aurora's
# 720-row crop, ascending latitude, -180..180 longitude); sizes beyond these are refused as unsafe.
MAX_GRID_POINTS_PER_AXIS = 4 * 1441
ALLOWED_CODECS = {"blosc", "zstd", "zlib", "gzip", "lz4", "bz2", "lzma"}
COORD_DIMS = {"time": "time", "pressure_level": "pressure_level", "lat": "lat", "lon": "lon"}

UNIT_SPELLINGS = {
    "K": {"k", "kelvin"},
    "m s-1": {"ms-1", "ms**-1", "m/s", "m.s-1", "ms^-1"},
    "Pa": {"pa", "pascal", "pascals"},
    "m2 s-2": {"m2s-2", "m**2s**-2", "m^2/s^2", "m2/s2", "m^2s^-2"},
    "kg kg-1": {"kgkg-1", "kgkg**-1", "kg/kg", "1"},
}


def units_match(stated: str, canonical: str) -> bool:
    """Whether a stated unit string is one of the usual spellings of the canonical unit."""
    compact = stated.replace(" ", "").lower()
    return compact == canonical.replace(" ", "").lower() or compact in UNIT_SPELLINGS.get(canonical, set())


Fetch = Callable[[str, int], bytes]  # (key, max_bytes) -> bytes, blocking


def is_metadata_key(key: str) -> bool:
    return key.rsplit("/", 1)[-1] in METADATA_SUFFIXES


class VerifiedStore(Store):
    """Read-only Zarr store whose every byte is checked against a frozen manifest."""

    supports_writes = False
    supports_deletes = False
    supports_listing = True
    supports_partial_writes = False

    def __init__(
        self,
        files: dict[str, str],
        fetch: Fetch,
        *,
        max_metadata_bytes: int,
        max_chunk_bytes: int,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(read_only=True)
        self._on_close = on_close
        self._files = dict(files)
        self._fetch = fetch
        self._max_metadata = max_metadata_bytes
        self._max_chunk = max_chunk_bytes
        self._metadata_cache: dict[str, bytes] = {}
        # Set by restrict_to(): the only arrays zarr may read, and the metadata zarr is shown.
        self._specs: dict[str, ChunkSpec] | None = None
        self._served: dict[str, bytes] = {}
        # One request at a time per store: a miner task never has more than one request in flight,
        # which is what keeps a whole round within settings.miners.http_concurrency.
        self._lock = threading.Lock()
        self.reads = 0
        # Read-ahead of the next chunk scoring will ask for (at most one, verified like any read):
        # the miner's transfer and the hash overlap the truth reads and the metrics of this field.
        self._prefetched: dict[str, Future[bytes]] = {}
        self._prefetcher: ThreadPoolExecutor | None = None
        self._prefetch_lock = threading.Lock()

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def close(self) -> None:
        super().close()
        if self._prefetcher is not None:
            # Not waiting: closing the HTTP client below ends a read still in flight.
            self._prefetcher.shutdown(wait=False, cancel_futures=True)
            self._prefetcher = None
        with self._prefetch_lock:
            self._prefetched.clear()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    def prefetch(self, key: str) -> None:
        """Start reading ``key`` in the background; a later ``read_verified(key)`` takes the result.

        Only a listed, not yet prefetched chunk is fetched, one at a time (the store lock still
        serializes requests), and its bytes are hash-checked before anyone can use them.
        """
        with self._prefetch_lock:
            if key in self._prefetched or key not in self._files or is_metadata_key(key):
                return
            if self._prefetcher is None:
                self._prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forecast-prefetch")
            for stale in [k for k, f in self._prefetched.items() if f.done()]:
                self._prefetched.pop(stale)  # never asked for: drop it rather than hold its bytes
            self._prefetched[key] = self._prefetcher.submit(self._read_verified, key)

    def read_verified(self, key: str) -> bytes:
        """The bytes of ``key`` after the manifest check (blocking)."""
        with self._prefetch_lock:
            pending = self._prefetched.pop(key, None)
        if pending is not None:
            return pending.result()  # raises what the verified read raised (e.g. ManifestError)
        return self._read_verified(key)

    def _read_verified(self, key: str) -> bytes:
        check_store_key(key)
        expected = self._files.get(key)
        if expected is None:
            raise ManifestError(f"store key {key!r} is not in the frozen manifest")
        if key in self._metadata_cache:
            return self._metadata_cache[key]
        metadata = is_metadata_key(key)
        with self._lock:
            data = self._fetch(key, self._max_metadata if metadata else self._max_chunk)
            self.reads += 1
        if file_hash(key, data) != expected.lower():
            raise ManifestError(f"store key {key!r} does not match the frozen manifest (changed after freeze)")
        if metadata:
            self._metadata_cache[key] = data
        return data

    def restrict_to(self, arrays: Iterable[str]) -> None:
        """From now on zarr sees only ``arrays`` (the ones scoring needs), and decoded chunks.

        The metadata zarr is shown lists just those arrays, with no codecs: every chunk is decoded
        here with output bounds (``decoding.decode_chunk``), so no Zarr or numcodecs decoder ever
        runs on a miner's bytes, and extra variables, coordinates or attributes are never read.
        """
        meta = load_json(self.read_verified(".zmetadata"), ".zmetadata")["metadata"]
        self._specs, self._served = zarr_view(meta, arrays, max_chunk_bytes=self._max_chunk)

    def read_decoded(self, key: str) -> bytes:
        """A verified chunk of a needed array, decoded under the bounds of its declared chunk shape."""
        data = self.read_verified(key)
        if self._specs is None:
            return data
        return decode_chunk(key, data, self._specs[key.split("/", 1)[0]], max_chunk_bytes=self._max_chunk)

    async def get(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None) -> Buffer | None:
        if self._specs is not None and is_metadata_key(key):
            shown = self._served.get(key)  # consolidated: per-array files are never fetched
            return None if shown is None else prototype.buffer.from_bytes(shown)
        if key not in self._files:
            if is_metadata_key(key):
                return None  # optional metadata zarr probes for (e.g. zarr.json) is simply absent
            # A chunk the manifest does not list would silently read as fill values: refuse it.
            raise ManifestError(f"store key {key!r} is not in the frozen manifest")
        if self._specs is not None and key.split("/", 1)[0] not in self._specs:
            raise SafetyViolation(f"store key {key!r} is not part of an array scoring reads")
        data = await asyncio.to_thread(self.read_decoded, key)
        if isinstance(byte_range, RangeByteRequest):
            data = data[byte_range.start : byte_range.end]
        elif isinstance(byte_range, OffsetByteRequest):
            data = data[byte_range.offset :]
        elif isinstance(byte_range, SuffixByteRequest):
            data = data[-byte_range.suffix :]
        return prototype.buffer.from_bytes(data)

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]

    async def exists(self, key: str) -> bool:
        return key in self._files

    async def set(self, key: str, value: Buffer) -> None:
        raise PermissionError("verified stores are read-only")

    async def delete(self, key: str) -> None:
        raise PermissionError("verified stores are read-only")

    async def list(self) -> AsyncIterator[str]:
        for key in self._files:
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        for key in self._files:
            if key.startswith(prefix):
                yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        prefix = prefix.rstrip("/")
        start = prefix + "/" if prefix else ""
        seen = {key[len(start) :].split("/")[0] for key in self._files if key.startswith(start)}
        for name in sorted(seen):
            yield name


@dataclass(frozen=True)
class ForecastLayout:
    """What every miner forecast must look like (SPEC section 6), from settings."""

    surface: tuple[str, ...]
    atmospheric: tuple[str, ...]
    levels: tuple[int, ...]
    lead_hours: tuple[int, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> ForecastLayout:
        step = settings.miners.forecast_step_hours
        return cls(
            surface=tuple(settings.scoring.surface_variables),
            atmospheric=tuple(settings.scoring.atmospheric_variables),
            levels=tuple(settings.scoring.pressure_levels_hpa),
            lead_hours=tuple(step * (i + 1) for i in range(settings.miners.forecast_steps)),
        )


def check_metadata(
    zmetadata: bytes, layout: ForecastLayout, *, expected_grid: Grid | None, max_chunk_bytes: int
) -> GridShape:
    """Validate the consolidated metadata before any array exists; returns the forecast's grid."""
    try:
        meta = load_json(zmetadata, ".zmetadata")["metadata"]
    except (ValueError, KeyError, TypeError):
        raise InvalidDataError("consolidated metadata is not a Zarr v2 .zmetadata document") from None
    if not isinstance(meta, dict):
        raise InvalidDataError("consolidated metadata has no metadata mapping")

    def array(name: str) -> tuple[dict, dict]:
        zarray, zattrs = meta.get(f"{name}/.zarray"), meta.get(f"{name}/.zattrs", {})
        if not isinstance(zarray, dict) or not isinstance(zattrs, dict):
            raise InvalidDataError(f"forecast has no array {name!r}")
        dtype = zarray.get("dtype")
        if dtype not in ALLOWED_DTYPES:
            raise InvalidDataError(f"{name}: dtype {dtype!r} not allowed")
        for codec in [zarray.get("compressor"), *(zarray.get("filters") or [])]:
            if codec is not None and (not isinstance(codec, dict) or codec.get("id") not in ALLOWED_CODECS):
                raise InvalidDataError(f"{name}: codec {str(codec)[:60]!r} not allowed")
        if zarray.get("order", "C") != "C" or zarray.get("zarr_format") != 2:
            raise InvalidDataError(f"{name}: only C-ordered Zarr v2 arrays are read")
        shape, chunks = zarray.get("shape"), zarray.get("chunks")
        if not (isinstance(shape, list) and isinstance(chunks, list) and len(shape) == len(chunks) <= 4):
            raise InvalidDataError(f"{name}: malformed shape/chunks")
        if not all(isinstance(v, int) and v >= 0 for v in shape + chunks):
            raise InvalidDataError(f"{name}: malformed shape/chunks")
        return zarray, zattrs

    lat, _ = array("lat")
    lon, _ = array("lon")
    nlat, nlon = lat["shape"][0], lon["shape"][0]
    if expected_grid is not None and (nlat, nlon) != expected_grid.shape:
        raise InvalidDataError(f"grid {nlat} x {nlon} is not the expected {expected_grid.nlat} x {expected_grid.nlon}")
    # The reference validator checks no grid: it interpolates whatever it gets onto the truth grid
    # (``weather_logic.py`` ~2869-2926). Only sizes a grid cannot have, or that are unsafe, are refused.
    if not (2 <= nlat <= MAX_GRID_POINTS_PER_AXIS and 3 <= nlon <= MAX_GRID_POINTS_PER_AXIS):
        raise InvalidDataError(f"grid {nlat} x {nlon} is not a latitude-longitude grid this validator reads")
    grid = GridShape(nlat, nlon)
    steps, nlevels = len(layout.lead_hours), len(layout.levels)
    for coord, size in (("time", steps), ("pressure_level", nlevels)):
        zarray, _ = array(coord)
        if zarray["shape"] != [size]:
            raise InvalidDataError(f"coordinate {coord} has shape {zarray['shape']}, expected [{size}]")
    for names, dims in (
        (layout.surface, ["time", "lat", "lon"]),
        (layout.atmospheric, ["time", "pressure_level", "lat", "lon"]),
    ):
        sizes = {"time": steps, "pressure_level": nlevels, "lat": grid.nlat, "lon": grid.nlon}
        for name in names:
            zarray, zattrs = array(name)
            if zarray["dtype"] not in FIELD_DTYPES:
                raise InvalidDataError(f"{name}: dtype {zarray['dtype']} is not a float")
            if zattrs.get("_ARRAY_DIMENSIONS") != dims:
                raise InvalidDataError(f"{name}: dims {zattrs.get('_ARRAY_DIMENSIONS')} are not {dims}")
            if zarray["shape"] != [sizes[d] for d in dims]:
                raise InvalidDataError(f"{name}: shape {zarray['shape']} does not match the expected grid")
            if zarray["chunks"] != [1] * (len(dims) - 2) + [grid.nlat, grid.nlon]:
                raise InvalidDataError(f"{name}: chunks {zarray['chunks']} are not one 2-D field per chunk")
            if grid.nlat * grid.nlon * int(zarray["dtype"][-1]) > max_chunk_bytes:
                raise SafetyViolation(f"{name}: a field chunk would exceed the chunk size cap")
            units = zattrs.get("units")
            # Deployed miners may omit units (the value-range probe still applies); stated units must match.
            if units is not None and not units_match(str(units), VARIABLES[name].units):
                raise InvalidDataError(f"{name}: units {str(units)[:40]!r}, expected {VARIABLES[name].units!r}")
    return grid


@dataclass(frozen=True)
class GridShape:
    """The grid size the metadata declares, before the coordinate values are read."""

    nlat: int
    nlon: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.nlat, self.nlon)


def miner_grid(latitudes: np.ndarray, longitudes: np.ndarray, shape: tuple[int, int]) -> AnyGrid:
    """The grid the coordinates describe: the canonical ``Grid`` when they are canonical.

    Refused: coordinates that do not match the declared shape, are not finite, repeat or turn back
    (no interpolation is defined on them), or lie outside the globe (latitude -90..90, longitude
    -180..360). Everything else - any order, any regular or irregular spacing, a missing pole row -
    is accepted and interpolated as the scoring profile says.
    """
    lat = np.asarray(latitudes, dtype=np.float64).ravel()
    lon = np.asarray(longitudes, dtype=np.float64).ravel()
    if (lat.size, lon.size) != shape:
        raise ValueError(f"coordinates {lat.size} x {lon.size} do not match the arrays' {shape[0]} x {shape[1]}")
    if not (np.all(np.isfinite(lat)) and np.all(np.isfinite(lon))):
        raise ValueError("coordinates are not finite")
    for name, values in (("latitude", lat), ("longitude", lon)):
        steps = np.diff(values)
        if not (np.all(steps > 0) or np.all(steps < 0)):
            raise ValueError(f"{name} is not strictly monotonic")
    if lat.min() < -90.0 - 1e-6 or lat.max() > 90.0 + 1e-6 or lon.min() < -180.0 - 1e-6 or lon.max() > 360.0 + 1e-6:
        raise ValueError("coordinates lie outside latitude -90..90 / longitude -180..360")
    grid = CoordinateGrid(lat, lon)
    return grid.canonical() or grid


class VerifiedForecast:
    """One miner's forecast as a ``ForecastSource``: native-endian (nlat, nlon) fields, verified reads.

    ``grid`` is the store's own grid (a canonical ``Grid`` or a ``CoordinateGrid``); fields come in
    the store's orientation and precision (float32 or float64), and scoring maps them onto the truth
    grid (``scoring/regrid.py``).
    """

    def __init__(self, store: VerifiedStore, layout: ForecastLayout, init_time: datetime, grid: GridShape) -> None:
        self.store = store
        self.layout = layout
        self.init_time = init_time
        self.grid: AnyGrid | GridShape = grid
        store.restrict_to([*COORD_DIMS, *layout.surface, *layout.atmospheric])
        with decoding("forecast store (fill values, time units or dtypes)"):
            self.dataset = xr.open_zarr(store, consolidated=True, zarr_format=2, chunks=None, decode_times=True)
        self._check_coordinates()

    @classmethod
    def open(
        cls,
        store: VerifiedStore,
        layout: ForecastLayout,
        init_time: datetime,
        *,
        expected_grid: Grid | None = None,
        max_chunk_bytes: int,
    ) -> VerifiedForecast:
        grid = check_metadata(
            store.read_verified(".zmetadata"), layout, expected_grid=expected_grid, max_chunk_bytes=max_chunk_bytes
        )
        return cls(store, layout, init_time, grid)

    def _coord(self, name: str) -> np.ndarray:
        with decoding(f"coordinate {name}"):
            return np.asarray(self.dataset[name].values)

    def _check_coordinates(self) -> None:
        try:
            self.grid = miner_grid(self._coord("lat"), self._coord("lon"), self.grid.shape)
        except ValueError as exc:
            raise InvalidDataError(f"forecast coordinates: {exc}") from None
        levels = [int(v) for v in self._coord("pressure_level")]
        if levels != list(self.layout.levels):
            raise InvalidDataError(f"pressure levels {levels} are not {list(self.layout.levels)}")
        times = self._coord("time")
        expected = [self.init_time + timedelta(hours=h) for h in self.layout.lead_hours]
        if np.issubdtype(times.dtype, np.datetime64):
            got = [datetime.fromisoformat(str(np.datetime_as_string(t, unit="s"))) for t in times]
            ok = [g.replace(tzinfo=None) for g in got] == [e.replace(tzinfo=None) for e in expected]
        elif np.issubdtype(times.dtype, np.timedelta64):
            ok = [int(t / np.timedelta64(1, "h")) for t in times] == list(self.layout.lead_hours)
        else:
            ok = False
        if not ok:
            raise InvalidDataError("forecast times are not the expected init + 6 h ... steps")
        self._lead_index = {lead: i for i, lead in enumerate(self.layout.lead_hours)}
        self._level_index = {level: i for i, level in enumerate(self.layout.levels)}
        # Scoring reads fields in layout order (surface, then each atmospheric variable by level).
        self._order: list[tuple[str, int | None]] = [(name, None) for name in self.layout.surface]
        self._order += [(name, level) for name in self.layout.atmospheric for level in self.layout.levels]
        meta = json.loads(self.store.read_verified(".zmetadata"))["metadata"]
        self._separator = {
            name: str(meta[f"{name}/.zarray"].get("dimension_separator") or ".")
            for name in (*self.layout.surface, *self.layout.atmospheric)
        }

    def chunk_key(self, variable: str, level_hpa: int | None, lead_hours: int) -> str:
        """The store key of one field's chunk (one 2-D field per chunk, checked in ``check_metadata``)."""
        index = [self._lead_index[lead_hours]]
        if variable in self.layout.atmospheric:
            index.append(self._level_index[level_hpa])
        return f"{variable}/" + self._separator[variable].join(str(i) for i in [*index, 0, 0])

    def _prefetch_after(self, variable: str, level_hpa: int | None, lead_hours: int) -> None:
        try:
            position = self._order.index((variable, level_hpa if variable in self.layout.atmospheric else None))
        except ValueError:
            return
        if position + 1 < len(self._order):
            self.store.prefetch(self.chunk_key(*self._order[position + 1], lead_hours))

    def field(self, variable: str, level_hpa: int | None, lead_hours: int) -> np.ndarray:
        if lead_hours not in self._lead_index:
            raise InvalidDataError(f"lead {lead_hours} h is not in the forecast")
        index: dict[str, Any] = {"time": self._lead_index[lead_hours]}
        if variable in self.layout.atmospheric:
            if level_hpa not in self._level_index:
                raise InvalidDataError(f"level {level_hpa} hPa is not in the forecast")
            index["pressure_level"] = self._level_index[level_hpa]
        elif variable not in self.layout.surface:
            raise InvalidDataError(f"variable {variable!r} is not in the forecast")
        with decoding(self.chunk_key(variable, level_hpa, lead_hours)):
            values = np.asarray(self.dataset[variable].isel(index).values)
        self._prefetch_after(variable, level_hpa, lead_hours)
        if values.shape != self.grid.shape:
            raise InvalidDataError(f"{variable} field has shape {values.shape}, expected {self.grid.shape}")
        native = values.dtype.newbyteorder("=") if values.dtype.kind == "f" else np.dtype(np.float32)
        return np.ascontiguousarray(values, dtype=native if native.itemsize in (4, 8) else np.float32)

    def close(self) -> None:
        self.dataset.close()
        self.store.close()
