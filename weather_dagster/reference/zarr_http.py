"""Open a public Zarr store over HTTP(S) safely: consolidated metadata is required.

Without consolidated metadata, a Zarr store on a server without directory listings opens as an
*empty* dataset with no error at all (SPEC section 7); we refuse that and name the URL instead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import aiohttp
import xarray as xr

from weather_dagster.core.errors import SourceError
from weather_dagster.reference.variables import VARIABLES


def open_consolidated(url: str, timeout_s: float, required: Iterable[str] = ()) -> xr.Dataset:
    """Lazily opened (no dask), consolidated-only; every ``required`` variable must be present."""
    try:
        ds = xr.open_zarr(
            url,
            consolidated=True,
            zarr_format=2,
            chunks=None,
            storage_options={"client_kwargs": {"timeout": aiohttp.ClientTimeout(total=timeout_s)}},
        )
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        if ".zmetadata" in text or isinstance(exc, FileNotFoundError | KeyError):
            problem = (
                "no consolidated Zarr metadata (.zmetadata) could be read; "
                f"refusing to open unconsolidated ({text[:300]})"
            )
        else:
            problem = f"cannot open Zarr store: {text[:400]}"
        raise SourceError(url, problem) from exc
    if not ds.data_vars:
        raise SourceError(url, "Zarr store opened with no variables (empty or unconsolidated store)")
    missing = [name for name in required if name not in ds.data_vars]
    if missing:
        raise SourceError(url, f"missing variables in the Zarr store: {', '.join(missing)}")
    return ds


def read(da: xr.DataArray, url: str) -> xr.DataArray:
    """Load a lazily indexed selection, turning transport failures into a SourceError."""
    try:
        return da.load()
    except Exception as exc:
        raise SourceError(url, f"reading {da.name} failed: {type(exc).__name__}: {str(exc)[:300]}") from exc


class LazyConsolidatedStore:
    """A remote consolidated Zarr opened once, on first use, by whichever thread gets there first.

    Shared by the ERA5 and climatology adapters: both need every scored variable present.
    """

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._ds: xr.Dataset | None = None
        self._lock = threading.Lock()

    def dataset(self) -> xr.Dataset:
        with self._lock:
            if self._ds is None:
                required = [VARIABLES[name].era5_name for name in VARIABLES]
                self._ds = open_consolidated(self.url, self.timeout_s, required)
            return self._ds
