"""What a miner forecast's consolidated metadata and coordinates must look like (SPEC section 6).

Checked before any array is allocated: shapes, dtypes, chunking, codecs, units and dims of every
array scoring reads; then the coordinate values (``miner_grid``). Nothing from a miner is
unpickled or evaluated: object dtypes and unknown codecs are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from weather_dagster.core.errors import InvalidDataError, SafetyViolation
from weather_dagster.miners.decoding import load_json
from weather_dagster.reference.grid import AnyGrid, CoordinateGrid, Grid
from weather_dagster.reference.variables import VARIABLES
from weather_dagster.settings import Settings

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
