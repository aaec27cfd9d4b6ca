"""ERA5 truth from the Copernicus Climate Data Store (CDS) retrieve API, through the ``cdsapi`` client.

The reference validator reads ERA5 this way (about five days behind real time, ARCO's ERA5T runs about
six and has stalled for days). It asks two datasets per valid time, mirrored here: single levels
(2t, 10u, 10v, msl) and pressure levels (t, u, v, q, z at the 13 scored levels), product type
``reanalysis``, the configured grid, one date and time.

Format: the reference asks for NetCDF, which the CDS makes by converting its GRIB archive (and which
would need an HDF5 stack here to read). This adapter asks for GRIB, the CDS's native format, and
decodes it with cfgrib/eccodes like GFS: the values are the same, no new dependency.

Availability: the probe is the catalogue's temporal extent of both datasets (the newest valid time
published), read through the same client, so no job is queued to find out.

The key is a ``SecretStr`` from the settings or the standard ``~/.cdsapirc``; the client's debug log
(which prints it) is dropped, and errors are built from messages that never contain it.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from pydantic import SecretStr

from weather_dagster.core.errors import SourceError, TruthNotAvailable
from weather_dagster.reference.canonical import canonical_dataset, check_field, orient
from weather_dagster.reference.grid import Grid
from weather_dagster.reference.variables import VARIABLES

log = logging.getLogger(__name__)
SINGLE_LEVELS = "reanalysis-era5-single-levels"
PRESSURE_LEVELS = "reanalysis-era5-pressure-levels"
# cfgrib's names for ECMWF's GRIB parameters, by canonical name.
GRIB_NAMES = {"2t": "t2m", "10u": "u10", "10v": "v10", "msl": "msl", "t": "t", "u": "u", "v": "v", "q": "q", "z": "z"}
NOT_AVAILABLE_HINTS = ("not available yet", "no data", "none of the data")


def read_cdsapirc(path: Path) -> tuple[str | None, SecretStr | None]:
    """``url`` and ``key`` of a ``.cdsapirc`` (``key: value`` lines), or (None, None) if it is absent."""
    path = Path(path).expanduser()
    if not path.is_file():
        return None, None
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() in ("url", "key"):
            values[name.strip()] = value.strip()
    key = values.get("key")
    return values.get("url"), SecretStr(key) if key else None


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def requests_for(valid_time: datetime, variables: tuple[str, ...], levels: tuple[int, ...], grid: Grid):
    """The (dataset, request) pairs for one valid time, as the reference builds them (GRIB instead of NetCDF)."""
    valid_time = _utc(valid_time)
    common = {
        "product_type": "reanalysis",
        "data_format": "grib",
        "download_format": "unarchived",
        "date": [valid_time.strftime("%Y-%m-%d")],
        "time": [valid_time.strftime("%H:%M")],
        "grid": f"{grid.resolution_deg:g}/{grid.resolution_deg:g}",
    }
    surface = [VARIABLES[v].era5_name for v in variables if not VARIABLES[v].atmospheric]
    upper = [VARIABLES[v].era5_name for v in variables if VARIABLES[v].atmospheric]
    out = []
    if surface:
        out.append((SINGLE_LEVELS, {**common, "variable": surface}))
    if upper:
        out.append((PRESSURE_LEVELS, {**common, "variable": upper, "pressure_level": [str(x) for x in levels]}))
    return out


@dataclass
class CdsEra5:
    """ERA5 at one valid time from the CDS; ``available`` is the probe, ``load`` the download."""

    url: str
    key: SecretStr | None
    grid: Grid
    timeout_s: float = 60.0
    poll_max_s: float = 120.0
    retry_max: int = 5
    probe_ttl_s: float = 300.0
    _stop: tuple[float, datetime] | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def from_settings(cls, ref: Any, grid: Grid) -> CdsEra5:
        url, key = ref.cds_url, ref.cds_key
        if key is None:
            rc_url, key = read_cdsapirc(ref.cds_rc_path)
            url = rc_url or url
        return cls(url, key, grid, ref.cds_timeout_s, ref.cds_poll_max_s, ref.cds_retry_max, ref.cds_probe_ttl_s)

    def client(self):
        import cdsapi

        if self.key is None or not self.key.get_secret_value():
            raise SourceError(self.url, "no CDS key: set WEATHER_REFERENCE__CDS_KEY or write ~/.cdsapirc")
        return cdsapi.Client(
            url=self.url,
            key=self.key.get_secret_value(),
            quiet=True,
            progress=False,
            timeout=self.timeout_s,
            sleep_max=self.poll_max_s,
            retry_max=self.retry_max,
            info_callback=lambda *a, **k: log.debug(*a, **k),
            warning_callback=lambda *a, **k: log.warning(*a, **k),
            error_callback=lambda *a, **k: log.warning(*a, **k),
            debug_callback=lambda *a, **k: None,  # the client's debug record holds the key: never emit it
        )

    def _fail(self, what: str, exc: BaseException) -> SourceError:
        message = str(exc)
        if self.key is not None and self.key.get_secret_value():
            message = message.replace(self.key.get_secret_value(), "***")
        return SourceError(self.url, f"{what}: {type(exc).__name__}: {message[:300]}")

    def published_until(self) -> datetime:
        """The newest valid time both datasets have published (catalogue temporal extent), memoised."""
        with self._lock:
            if self._stop is not None and time.monotonic() - self._stop[0] < self.probe_ttl_s:
                return self._stop[1]
        try:
            inner = self.client().client  # the ecmwf-datastores client behind cdsapi's legacy facade
            ends = [inner.get_collection(name).end_datetime for name in (SINGLE_LEVELS, PRESSURE_LEVELS)]
        except SourceError:
            raise
        except Exception as exc:
            raise self._fail("CDS catalogue probe failed", exc) from None
        if any(end is None for end in ends):
            raise SourceError(self.url, "CDS catalogue gives no end of the ERA5 temporal extent")
        stop = min(_utc(end) for end in ends)
        with self._lock:
            self._stop = (time.monotonic(), stop)
        return stop

    def available(self, valid_time: datetime) -> bool:
        return _utc(valid_time) <= self.published_until()

    def load(self, valid_time: datetime, variables: tuple[str, ...], levels: tuple[int, ...]) -> xr.Dataset:
        valid_time = _utc(valid_time)
        if not self.available(valid_time):
            raise TruthNotAvailable(f"CDS has not published ERA5 at {valid_time.isoformat()} yet (url: {self.url})")
        client = self.client()
        fields: dict[tuple[str, int | None], np.ndarray] = {}
        with tempfile.TemporaryDirectory(prefix="cds-") as tmp:
            for dataset, request in requests_for(valid_time, variables, levels, self.grid):
                target = Path(tmp) / f"{dataset}.grib"
                try:
                    client.retrieve(dataset, request, str(target))
                except Exception as exc:
                    if any(hint in str(exc).lower() for hint in NOT_AVAILABLE_HINTS):
                        raise TruthNotAvailable(f"CDS: ERA5 at {valid_time.isoformat()} not available yet") from None
                    raise self._fail(f"CDS retrieve of {dataset} failed", exc) from None
                fields.update(self._decode(target, dataset, valid_time, variables, levels))
        for (name, level), values in fields.items():
            check_field(values, name, level, self.grid, self.url)
        return canonical_dataset(
            fields,
            variables,
            levels,
            self.grid,
            attrs={"source": "era5", "source_url": self.url, "truth_source": "cds"},
        )

    def _decode(
        self, path: Path, dataset: str, valid_time: datetime, variables: tuple[str, ...], levels: tuple[int, ...]
    ) -> dict[tuple[str, int | None], np.ndarray]:
        upper = dataset == PRESSURE_LEVELS
        wanted = [v for v in variables if VARIABLES[v].atmospheric == upper]
        type_of_level = "isobaricInhPa" if upper else "surface"
        where = f"{self.url} {dataset}"
        try:
            with xr.open_dataset(
                path,
                engine="cfgrib",
                backend_kwargs={"indexpath": "", "filter_by_keys": {"typeOfLevel": type_of_level}},
            ) as lazy:
                ds = lazy.load()  # one pass over the file, not one per field
        except Exception as exc:
            raise SourceError(where, f"undecodable GRIB: {type(exc).__name__}: {str(exc)[:200]}") from None
        out: dict[tuple[str, int | None], np.ndarray] = {}
        with ds:
            stamp = np.datetime64(valid_time.replace(tzinfo=None), "ns")
            got = ds["valid_time"].values if "valid_time" in ds.coords else ds["time"].values
            if stamp not in np.atleast_1d(got):
                raise SourceError(where, f"GRIB holds {np.atleast_1d(got)}, not {valid_time.isoformat()}")
            for name in wanted:
                grib_name = GRIB_NAMES[name]
                if grib_name not in ds:
                    raise SourceError(where, f"GRIB has no {grib_name} (variables {sorted(ds.data_vars)})")
                da = ds[grib_name]
                if upper:
                    present = [int(x) for x in np.atleast_1d(ds["isobaricInhPa"].values)]
                    missing = [lvl for lvl in levels if lvl not in present]
                    if missing:
                        raise SourceError(where, f"missing levels {missing} of {grib_name}")
                    values = orient(da.sel(isobaricInhPa=list(levels)), self.grid, where)
                    for i, level in enumerate(levels):
                        out[(name, level)] = np.ascontiguousarray(values[i])
                else:
                    out[(name, None)] = orient(da, self.grid, where)
        return out
