"""Reference data sources (SPEC section 7). Defaults point at the public archives."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from weather_dagster.settings._base import SettingsSection


class ReferenceSettings(SettingsSection):
    gfs_base_url: str = "https://noaa-gfs-bdp-pds.s3.amazonaws.com"
    era5_zarr_url: str = (
        "https://storage.googleapis.com/gcp-public-data-arco-era5/ar/full_37-1h-0p25deg-chunk-1.zarr-v3"
    )
    climatology_zarr_url: str = (
        "https://storage.googleapis.com/weatherbench2/datasets/era5-hourly-climatology/1990-2019_6h_1440x721.zarr"
    )
    # Reference reads never cap a whole transfer (an ARCO level chunk is ~150 MB): they fail when
    # connecting takes longer than http_connect_timeout_s, when no byte arrives for http_timeout_s
    # (idle read, also the wait for the first byte), or when a progress window of
    # http_progress_window_s brings fewer than http_progress_min_bytes (a trickle; the default
    # minimum, 1 MiB a minute, still moves a 150 MB chunk in under 2.5 hours).
    http_timeout_s: float = Field(60.0, gt=0.0, le=3600.0)
    http_connect_timeout_s: float = Field(15.0, gt=0.0, le=600.0)
    http_progress_window_s: float = Field(60.0, gt=0.0, le=3600.0)
    http_progress_min_bytes: int = Field(1 << 20, ge=1)
    max_grib_message_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    # The grid truth is checked against (0.25 in production; coarse grids for tests and the demo).
    grid_resolution_deg: float = Field(0.25, gt=0.0, le=10.0)
    # In-run retries of a blip (reset, 5xx, timeout) within seconds; longer outages go to the step table.
    http_blip_retries: int = Field(2, ge=0, le=10)
    http_blip_backoff_s: float = Field(0.5, ge=0.0, le=60.0)
    # How long a caller waits for another worker downloading the same partition.
    cache_lock_timeout_s: float = Field(3600.0, gt=0.0, le=86_400.0)
    # The ERA5 sensor looks this many days back for valid dates that have arrived.
    era5_sensor_lookback_days: int = Field(20, ge=1, le=365)
    era5_sensor_interval_s: int = Field(3600, ge=30, le=86_400)

    # -- ERA5 truth sources, in order of preference --------------------------------------------------
    # "arco" (the public Zarr, no account) and "cds" (Copernicus CDS retrieve API through cdsapi; needs
    # an account and the ERA5 licence accepted). A later source is asked for a valid time only once the
    # earlier ones have not published it ``era5_fallback_after_hours`` after it was due.
    era5_sources: tuple[Literal["arco", "cds"], ...] = Field(("arco",), min_length=1, max_length=2)
    era5_fallback_after_hours: float = Field(24.0, ge=0.0, le=24.0 * 60)
    # The era5_truth lag check warns when a source's newest published valid time is older than this.
    era5_lag_warn_hours: float = Field(8 * 24.0, gt=0.0, le=24.0 * 365)
    # CDS: the API root, and the key from here or (when unset) from the standard ~/.cdsapirc file.
    cds_url: str = "https://cds.climate.copernicus.eu/api"
    cds_key: SecretStr | None = Field(None, repr=False)
    cds_rc_path: str = "~/.cdsapirc"
    cds_timeout_s: float = Field(60.0, gt=0.0, le=3600.0)
    # The client polls a queued job with growing sleeps up to this; it retries HTTP blips this often.
    cds_poll_max_s: float = Field(120.0, gt=0.0, le=3600.0)
    cds_retry_max: int = Field(5, ge=1, le=500)
    # The CDS probe (catalogue temporal extent) is asked again after this long, not on every lead.
    cds_probe_ttl_s: float = Field(300.0, ge=0.0, le=86_400.0)
