"""Open a public Zarr store over HTTP(S) safely: consolidated metadata is required.

Without consolidated metadata, a Zarr store on a server without directory listings opens as an
*empty* dataset with no error at all (SPEC section 7); we refuse that and name the URL instead.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable
from typing import Any

import aiohttp
import xarray as xr

from weather_dagster.core.errors import SourceError
from weather_dagster.reference.http import ProgressWatch, Timeouts
from weather_dagster.reference.variables import VARIABLES


@functools.cache
def progress_response_class(timeouts: Timeouts) -> type[aiohttp.ClientResponse]:
    """An aiohttp response whose ``read()`` (what fsspec calls for every Zarr chunk) enforces the
    progress rule of :class:`ProgressWatch` while the body streams in; the idle-read timeout is
    aiohttp's own ``sock_read``. Cached per ``Timeouts`` so fsspec's file-system cache still hits."""

    class ProgressResponse(aiohttp.ClientResponse):
        async def read(self) -> bytes:
            if self._body is None:
                watch = ProgressWatch(timeouts, str(self.url))
                parts = []
                try:
                    async for part in self.content.iter_any():
                        watch.add(len(part))
                        parts.append(part)
                except BaseException:
                    self.close()
                    raise
                self._body = b"".join(parts)
            return await super().read()

    return ProgressResponse


def storage_options(timeouts: Timeouts) -> dict[str, Any]:
    """fsspec HTTP options: connect and idle-read timeouts, no total, the progress rule on bodies."""
    timeout = aiohttp.ClientTimeout(
        total=None, connect=timeouts.connect_s, sock_connect=timeouts.connect_s, sock_read=timeouts.idle_read_s
    )
    return {"client_kwargs": {"timeout": timeout, "response_class": progress_response_class(timeouts)}}


def open_consolidated(url: str, timeouts: Timeouts, required: Iterable[str] = ()) -> xr.Dataset:
    """Lazily opened (no dask), consolidated-only; every ``required`` variable must be present."""
    try:
        ds = xr.open_zarr(url, consolidated=True, zarr_format=2, chunks=None, storage_options=storage_options(timeouts))
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

    def __init__(self, url: str, timeouts: Timeouts) -> None:
        self.url = url
        self.timeouts = timeouts
        self._ds: xr.Dataset | None = None
        self._lock = threading.Lock()

    def dataset(self) -> xr.Dataset:
        with self._lock:
            if self._ds is None:
                required = [VARIABLES[name].era5_name for name in VARIABLES]
                self._ds = open_consolidated(self.url, self.timeouts, required)
            return self._ds
