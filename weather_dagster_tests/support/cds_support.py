"""Two ERA5 sources on loopback for tests: an ARCO-like Zarr that is late, and a CDS retrieve API.

The ARCO store holds every time but says (``valid_time_stop_era5t``) it has published only up to
``arco_until``, as the real store does when its ingestion stalls; the CDS server publishes up to
``cds_until`` and answers the unchanged ``cdsapi`` client.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from weather_dagster.reference.grid import Grid
from weather_dagster.reference.synthetic.atmosphere import SyntheticAtmosphere
from weather_dagster.reference.synthetic.server import SyntheticHttpServer
from weather_dagster.reference.synthetic.zarr_stores import write_era5_zarr
from weather_dagster_tests.support.cds_server import CdsServer


@dataclass
class TwoSources:
    arco: SyntheticHttpServer
    cds: CdsServer
    key: str
    grid: Grid

    def reference(self, **overrides: Any) -> dict[str, Any]:
        """``settings.reference`` for ARCO first, CDS second."""
        return {
            "era5_zarr_url": f"{self.arco.base_url}/era5.zarr",
            "grid_resolution_deg": self.grid.resolution_deg,
            "era5_sources": ["arco", "cds"],
            "era5_fallback_after_hours": 24.0,
            "cds_url": self.cds.api_url,
            "cds_key": self.key,
            "cds_poll_max_s": 0.2,
            "cds_retry_max": 2,
            "cds_probe_ttl_s": 0.0,
            "http_blip_backoff_s": 0.01,
            **overrides,
        }


@contextlib.contextmanager
def two_sources(
    root: Path, grid: Grid, start: datetime, days: int, arco_until: datetime, cds_until: datetime
) -> Iterator[TwoSources]:
    times = [start + timedelta(days=d) for d in range(days + 1)]
    write_era5_zarr(root / "era5.zarr", SyntheticAtmosphere(grid), times, era5t_stop=arco_until)
    key = f"wd-test-{uuid.uuid4().hex[:20]}"
    arco = SyntheticHttpServer(root).start()
    try:
        with CdsServer(grid, key, cds_until) as cds:
            yield TwoSources(arco, cds, key, grid)
    finally:
        arco.stop()
