"""Verified reads of a miner's forecast store (SPEC section 6): :class:`VerifiedForecast`.

``VerifiedForecast`` implements ``ForecastSource`` over a :class:`VerifiedStore` (every key read is
hash-checked against the frozen manifest): it checks the consolidated metadata (``metadata``) before
any array is allocated, then the coordinate values, then serves one (nlat, nlon) field per call.
Coordinates go through ``xarray.open_zarr`` (CF time decoding); a field is read straight from its
one verified, decoded chunk (``np.frombuffer``), with xarray's fill-value masking reproduced, so the
hot path has no zarr or xarray layer. A field whose attributes ask for more CF decoding (scale,
offset, missing values) is read through xarray as before.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import xarray as xr

from weather_dagster.core.errors import InvalidDataError
from weather_dagster.miners.decoding import decoding
from weather_dagster.miners.metadata import (
    ALLOWED_CODECS,
    ALLOWED_DTYPES,
    COORD_DIMS,
    FIELD_DTYPES,
    MAX_GRID_POINTS_PER_AXIS,
    UNIT_SPELLINGS,
    ForecastLayout,
    GridShape,
    check_metadata,
    miner_grid,
    units_match,
)
from weather_dagster.miners.verified_store import METADATA_SUFFIXES, Fetch, VerifiedStore, is_metadata_key
from weather_dagster.reference.grid import AnyGrid, Grid

__all__ = [
    "ALLOWED_CODECS",
    "ALLOWED_DTYPES",
    "COORD_DIMS",
    "FIELD_DTYPES",
    "MAX_GRID_POINTS_PER_AXIS",
    "METADATA_SUFFIXES",
    "UNIT_SPELLINGS",
    "Fetch",
    "ForecastLayout",
    "GridShape",
    "VerifiedForecast",
    "VerifiedStore",
    "check_metadata",
    "is_metadata_key",
    "miner_grid",
    "units_match",
]

# Attributes that make xarray transform a field beyond masking its fill value: such fields are
# read through xarray (rare; deployed miners write plain float32).
_CF_TRANSFORMS = ("scale_factor", "add_offset", "missing_value", "_FillValue", "_Unsigned", "dtype", "calendar")


@dataclass(frozen=True)
class _Direct:
    """How to read one field array's chunks without xarray: its dtype and the fill value to mask."""

    dtype: np.dtype
    fill: float | None  # xarray masks values equal to the Zarr fill value (NaN: nothing to mask)


def _direct_reads(meta: dict, names: tuple[str, ...]) -> dict[str, _Direct]:
    direct = {}
    for name in names:
        zarray, zattrs = meta[f"{name}/.zarray"], meta.get(f"{name}/.zattrs", {})
        if any(attr in zattrs for attr in _CF_TRANSFORMS):
            continue
        raw = zarray.get("fill_value")
        fill = None if raw is None else {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(raw, raw)
        if fill is not None and not isinstance(fill, int | float):
            continue
        direct[name] = _Direct(np.dtype(zarray["dtype"]), None if fill is None or math.isnan(fill) else float(fill))
    return direct


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
        names = (*self.layout.surface, *self.layout.atmospheric)
        self._separator = {name: str(meta[f"{name}/.zarray"].get("dimension_separator") or ".") for name in names}
        self._direct = _direct_reads(meta, names)

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
        following = self._order[position + 1 : position + 1 + self.store.read_ahead_chunks]
        self.store.prefetch([self.chunk_key(*field, lead_hours) for field in following])

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
        key = self.chunk_key(variable, level_hpa, lead_hours)
        direct = self._direct.get(variable)
        with decoding(key):
            if direct is None:
                values = np.asarray(self.dataset[variable].isel(index).values)
            else:
                values = self._read_direct(key, direct)
        self._prefetch_after(variable, level_hpa, lead_hours)
        if values.shape != self.grid.shape:
            raise InvalidDataError(f"{variable} field has shape {values.shape}, expected {self.grid.shape}")
        native = values.dtype.newbyteorder("=") if values.dtype.kind == "f" else np.dtype(np.float32)
        return np.ascontiguousarray(values, dtype=native if native.itemsize in (4, 8) else np.float32)

    def _read_direct(self, key: str, direct: _Direct) -> np.ndarray:
        """The field of one verified chunk, as xarray would decode it (fill value masked to NaN)."""
        values = np.frombuffer(self.store.read_decoded(key), dtype=direct.dtype).reshape(self.grid.shape)
        if direct.fill is not None:
            values = np.where(values == direct.fill, np.array(np.nan, dtype=values.dtype), values)
        return values

    def close(self) -> None:
        self.dataset.close()
        self.store.close()
