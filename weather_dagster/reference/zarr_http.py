"""Open a public Zarr store over HTTP(S) safely: consolidated metadata is required.

Without consolidated metadata, a Zarr store on a server without directory listings opens as an
*empty* dataset with no error at all (SPEC section 7); we refuse that and name the URL instead.
"""

from __future__ import annotations

from collections.abc import Iterable

import aiohttp
import xarray as xr

from weather_dagster.core.errors import SourceError


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
