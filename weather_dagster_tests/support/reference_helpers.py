"""Helpers for reference-data tests: custom GFS files served from a throwaway loopback server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from weather_dagster.reference.grid import Grid
from weather_dagster.reference.synthetic.atmosphere import SyntheticAtmosphere
from weather_dagster.reference.synthetic.grib import Message, gfs_messages, gfs_path, write_grib
from weather_dagster.reference.synthetic.server import SyntheticHttpServer
from weather_dagster.settings import Settings, load_settings


def write_custom_gfs(
    root: Path,
    grid: Grid,
    init_time: datetime,
    lead_hours: int = 0,
    edit: Callable[[list[Message]], list[Message]] | None = None,
) -> Path:
    """A synthetic GFS file whose message list ``edit`` may change (drop, corrupt, duplicate)."""
    atmosphere = SyntheticAtmosphere(grid)

    def values(name: str, level: int | None) -> np.ndarray:
        return atmosphere.field(name, level, init_time)

    messages = gfs_messages(values, grid, lead_hours)
    if edit:
        messages = edit(messages)
    path = gfs_path(root / "gfs", init_time, lead_hours)
    write_grib(path, messages, grid, init_time)
    return path


@contextmanager
def serving(root: Path) -> Iterator[SyntheticHttpServer]:
    server = SyntheticHttpServer(root).start()
    try:
        yield server
    finally:
        server.stop()


def settings_for(server: SyntheticHttpServer, data_dir: Path, grid: Grid, **reference: Any) -> Settings:
    base = server.base_url
    urls = {
        "gfs_base_url": f"{base}/gfs",
        "era5_zarr_url": f"{base}/era5.zarr",
        "climatology_zarr_url": f"{base}/climatology.zarr",
        "grid_resolution_deg": grid.resolution_deg,
        "http_blip_backoff_s": 0.01,
        **reference,
    }
    return load_settings(data_dir=data_dir, reference=urls)
