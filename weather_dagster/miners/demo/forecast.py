"""A demo miner's forecast store: Zarr v2, consolidated, one 2-D field per chunk (SPEC section 6).

Files are generated on demand from the synthetic atmosphere, never kept: only the metadata and
the signed manifest stay in memory, so a fleet of hundreds of miners stays small. A forecast is
truth at ``init + lead`` with a phase shift and noise growing with lead, scaled by ``1 - skill``;
behaviours alter the data or metadata to exercise the validator's checks.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path

import numpy as np

from weather_dagster.miners.demo import hostile, layouts
from weather_dagster.miners.demo.behaviours import Behaviour
from weather_dagster.miners.manifest import build_manifest, file_hash
from weather_dagster.reference.grid import Grid
from weather_dagster.reference.synthetic.atmosphere import SyntheticAtmosphere
from weather_dagster.reference.variables import (
    ATMOSPHERIC_VARIABLES,
    PRESSURE_LEVELS_HPA,
    SURFACE_VARIABLES,
    VARIABLES,
)

PHASE_DEG_PER_HOUR = 0.5
NOISE_PER_HOUR = 0.004


class FieldCache:
    """Truth-with-phase-shift fields shared by the fleet's miners of equal skill, within a byte budget."""

    def __init__(self, grid: Grid, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_items = max_bytes // (grid.nlat * grid.nlon * 4)
        self._items: dict = {}

    def get(self, key: tuple, make) -> np.ndarray:
        value = self._items.get(key)
        if value is None:
            value = make()
            if len(self._items) < self.max_items:
                self._items[key] = value
        return value


@dataclass
class ForecastStore:
    grid: Grid
    init_time: datetime
    uid: int
    behaviour: Behaviour = Behaviour.GOOD
    skill: float = 0.8
    steps: int = 40
    step_hours: int = 6
    oversized_metadata_bytes: int = 8 * 1024 * 1024
    cache: FieldCache | None = None
    # Benchmarks: keep generated chunk files on disk so serving a full-resolution store is a file read.
    file_cache_dir: Path | None = None
    bomb_bytes: int = 1 << 30  # what hostile bombs decompress to (demo/hostile.py)
    layout: str = "canonical"  # how the store is laid out (demo/layouts.py)
    noise_uid: int | None = None  # serve another uid's error pattern (layout twins of one forecast)
    _truth: SyntheticAtmosphere = field(init=False, repr=False)
    _noise: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._truth = SyntheticAtmosphere(self.grid)
        if self.cache is None:
            self.cache = FieldCache(self.grid, max_bytes=0)

    @property
    def leads(self) -> list[int]:
        return [self.step_hours * (i + 1) for i in range(self.steps)]

    @property
    def nlat(self) -> int:
        return self.grid.nlat - 1 if self.behaviour is Behaviour.WRONG_SHAPES else self.grid.nlat

    # -- data -------------------------------------------------------------------------------------

    def field(self, variable: str, level: int | None, lead: int) -> np.ndarray:
        if self.behaviour is Behaviour.GFS_COPY:
            values = self._truth.gfs_forecast(variable, level, self.init_time, lead)
        else:
            error = 1.0 - self.skill
            # The init time is part of the key: a fleet serving two rounds must never mix their fields.
            shifted = self.cache.get(
                (self.init_time, variable, level, lead, self.skill),
                lambda: self._truth.field(
                    variable,
                    level,
                    self.init_time + timedelta(hours=lead),
                    phase_shift_deg=PHASE_DEG_PER_HOUR * lead * error,
                ),
            )
            values = shifted + np.float32(NOISE_PER_HOUR * lead * error) * self._noise_pattern(variable, level)
        if self.behaviour is Behaviour.WRONG_UNITS and variable == "2t":
            values = values - np.float32(273.15)
        if self.behaviour is Behaviour.NAN_INJECTION:
            mask = np.random.default_rng(lead).random(values.shape) < 0.95
            values = np.where(mask, np.float32(np.nan), values)
        if self.behaviour is Behaviour.EXTREME_VALUES:
            values = values.copy()
            values[::7, ::5] = np.float32(1e15)
        if self.layout != "canonical":
            return layouts.arrange(self.layout, values, self.grid.longitudes)
        return np.ascontiguousarray(values[: self.nlat], dtype="<f4")

    def _noise_pattern(self, variable: str, level: int | None) -> np.ndarray:
        """This miner's own error pattern for one field (unit amplitude), made once per miner.

        ``SyntheticAtmosphere.field(noise=1) - field(noise=0)`` at the init time: the same smooth
        noise the atmosphere offers, fixed in time so a fleet of hundreds of miners stays cheap.
        """
        key = (variable, level)
        if key not in self._noise:
            seed = self.uid if self.noise_uid is None else self.noise_uid
            noisy = self._truth.field(variable, level, self.init_time, noise=1.0, noise_seed=seed)
            clean = self._truth.field(variable, level, self.init_time)
            self._noise[key] = noisy - clean
        return self._noise[key]

    # -- layout -----------------------------------------------------------------------------------

    def _array_meta(self, shape: list[int], chunks: list[int], dtype: str, fill=None) -> dict:
        return {
            "zarr_format": 2,
            "shape": shape,
            "chunks": chunks,
            "dtype": dtype,
            "compressor": None,
            "filters": None,
            "fill_value": fill,
            "order": "C",
            "dimension_separator": ".",
        }

    @cached_property
    def _coords(self) -> dict[str, tuple[np.ndarray, dict]]:
        # WRONG_SHAPES keeps every latitude here while its fields lose a row: a real rows/coordinate mismatch.
        lat, lon = layouts.coordinates(self.layout, self.grid.latitudes, self.grid.longitudes)
        return {
            "lat": (lat, {"units": "degrees_north"}),
            "lon": (lon, {"units": "degrees_east"}),
            "pressure_level": (np.array(PRESSURE_LEVELS_HPA, dtype="<i8"), {"units": "hPa"}),
            "time": (
                np.array(self.leads, dtype="<i8"),
                {
                    "units": f"hours since {self.init_time.replace(tzinfo=None).isoformat(sep=' ')}",
                    "calendar": "proleptic_gregorian",
                },
            ),
        }

    @cached_property
    def metadata(self) -> dict[str, bytes]:
        """Every metadata file of the store, with the consolidated ``.zmetadata`` built from them."""
        meta: dict[str, dict] = {".zgroup": {"zarr_format": 2}}
        root_attrs: dict = {"source": "weather-dagster demo miner", "init_time": self.init_time.isoformat()}
        if self.behaviour is Behaviour.OVERSIZED_METADATA:
            root_attrs["padding"] = "x" * self.oversized_metadata_bytes
        meta[".zattrs"] = root_attrs
        for name, (values, attrs) in self._coords.items():
            meta[f"{name}/.zarray"] = self._array_meta([len(values)], [len(values)], values.dtype.str)
            meta[f"{name}/.zattrs"] = {"_ARRAY_DIMENSIONS": [name], **attrs}
        nlat, nlon = len(self._coords["lat"][0]) - (self.grid.nlat - self.nlat), self.grid.nlon
        dtype = layouts.field_dtype(self.layout)
        for name in SURFACE_VARIABLES:
            meta[f"{name}/.zarray"] = self._array_meta([self.steps, nlat, nlon], [1, nlat, nlon], dtype, "NaN")
            meta[f"{name}/.zattrs"] = {"_ARRAY_DIMENSIONS": ["time", "lat", "lon"], "units": self._units(name)}
        for name in ATMOSPHERIC_VARIABLES:
            shape = [self.steps, len(PRESSURE_LEVELS_HPA), nlat, nlon]
            meta[f"{name}/.zarray"] = self._array_meta(shape, [1, 1, nlat, nlon], dtype, "NaN")
            meta[f"{name}/.zattrs"] = {
                "_ARRAY_DIMENSIONS": ["time", "pressure_level", "lat", "lon"],
                "units": self._units(name),
            }
        hostile.alter_metadata(self.behaviour, meta, self.bomb_bytes)
        files = {key: json.dumps(value).encode() for key, value in meta.items()}
        files[".zmetadata"] = json.dumps({"zarr_consolidated_format": 1, "metadata": meta}).encode()
        return files

    def _units(self, name: str) -> str:
        return "degC" if self.behaviour is Behaviour.WRONG_UNITS and name == "2t" else VARIABLES[name].units

    def chunk_keys(self) -> list[str]:
        keys = [f"{name}/0" for name in self._coords]
        for t in range(self.steps):
            keys += [f"{name}/{t}.0.0" for name in SURFACE_VARIABLES]
            keys += [f"{name}/{t}.{lv}.0.0" for name in ATMOSPHERIC_VARIABLES for lv in range(len(PRESSURE_LEVELS_HPA))]
        return keys + hostile.extra_keys(self.behaviour)

    def file(self, key: str) -> bytes | None:
        """The bytes of one store file, or None when the store has no such key."""
        if key in self.metadata:
            return self.metadata[key]
        if self.file_cache_dir is None:
            return hostile.chunk(self.behaviour, key, self._make_file(key), self.bomb_bytes)
        path = self._cache_path(key)
        if path is not None and path.is_file():
            return path.read_bytes()
        data = hostile.chunk(self.behaviour, key, self._make_file(key), self.bomb_bytes)
        if data is not None and path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            partial.write_bytes(data)
            partial.replace(path)  # atomic: a concurrent reader never sees half a chunk
        return data

    def cached_path(self, key: str) -> Path | None:
        """The file already holding chunk ``key`` exactly as :meth:`file` returns it, if there is one
        (served with ``sendfile``, so a demo miner costs the machine it shares little CPU)."""
        if self.file_cache_dir is None or key in self.metadata:
            return None
        path = self._cache_path(key)
        return path if path is not None and path.is_file() else None

    def _cache_path(self, key: str) -> Path | None:
        """Where a chunk of this exact store (miner, behaviour, skill, grid, layout, init) is cached."""
        if not all(part and part not in (".", "..") for part in key.split("/")):
            return None
        store = (
            f"uid{self.uid}-{self.behaviour.value}-skill{self.skill:g}-grid{self.grid.resolution_deg:g}"
            f"-{self.steps}x{self.step_hours}h-{self.init_time:%Y%m%dT%H}-{self.layout}"
        )
        return Path(self.file_cache_dir) / store / key

    def _make_file(self, key: str) -> bytes | None:
        name, _, index = key.partition("/")
        if name in self._coords and index == "0":
            return self._coords[name][0].tobytes()
        parts = index.split(".")
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            return None
        if name in SURFACE_VARIABLES and len(numbers) == 3 and 0 <= numbers[0] < self.steps:
            return self.field(name, None, self.leads[numbers[0]]).tobytes()
        if (
            name in ATMOSPHERIC_VARIABLES
            and len(numbers) == 4
            and 0 <= numbers[0] < self.steps
            and 0 <= numbers[1] < len(PRESSURE_LEVELS_HPA)
        ):
            return self.field(name, PRESSURE_LEVELS_HPA[numbers[1]], self.leads[numbers[0]]).tobytes()
        return None

    def file_hashes(self) -> dict[str, str]:
        hashes = {key: file_hash(key, data) for key, data in self.metadata.items()}
        for key in self.chunk_keys():
            hashes[key] = file_hash(key, self.file(key) or b"")
        return hashes

    def manifest(self, signer_ss58: str, extra: dict | None = None) -> bytes:
        return build_manifest(self.file_hashes(), signer_ss58, extra)
