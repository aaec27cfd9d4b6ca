"""Reference data sources (SPEC section 7). Defaults point at the public archives."""

from __future__ import annotations

from pydantic import Field

from weather_dagster.settings._base import SettingsSection


class ReferenceSettings(SettingsSection):
    gfs_base_url: str = "https://noaa-gfs-bdp-pds.s3.amazonaws.com"
    era5_zarr_url: str = (
        "https://storage.googleapis.com/gcp-public-data-arco-era5/ar/full_37-1h-0p25deg-chunk-1.zarr-v3"
    )
    climatology_zarr_url: str = (
        "https://storage.googleapis.com/weatherbench2/datasets/era5-hourly-climatology/1990-2019_6h_1440x721.zarr"
    )
    http_timeout_s: float = Field(60.0, gt=0.0, le=3600.0)
    max_grib_message_bytes: int = Field(5 * 1024 * 1024, ge=1024)
