"""Build the whole offline reference tree (GFS GRIB2 + .idx, ERA5 Zarr, climatology Zarr) in one call.

Served by :mod:`weather_dagster.reference.synthetic.server`, the tree answers at
``<base>/gfs`` (GFS base URL), ``<base>/era5.zarr`` and ``<base>/climatology.zarr``: the three
``settings.reference`` URLs. All truth comes from :class:`SyntheticAtmosphere`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from weather_dagster.reference.grid import Grid
from weather_dagster.reference.synthetic.atmosphere import SyntheticAtmosphere
from weather_dagster.reference.synthetic.grib import write_synthetic_gfs
from weather_dagster.reference.synthetic.zarr_stores import write_climatology_zarr, write_era5_zarr

GFS_DIR, ERA5_STORE, CLIMATOLOGY_STORE = "gfs", "era5.zarr", "climatology.zarr"


@dataclass
class SyntheticTree:
    root: Path
    grid: Grid
    analysis_times: list[datetime] = field(default_factory=list)
    forecast_inits: list[datetime] = field(default_factory=list)
    forecast_leads: tuple[int, ...] = ()
    era5_times: list[datetime] = field(default_factory=list)
    climatology_days: list[int] = field(default_factory=list)
    climatology_hours: tuple[int, ...] = ()

    @property
    def atmosphere(self) -> SyntheticAtmosphere:
        return SyntheticAtmosphere(self.grid)

    def urls(self, base_url: str) -> dict[str, str]:
        """``settings.reference`` overrides for a server serving ``root`` at ``base_url``."""
        base = base_url.rstrip("/")
        return {
            "gfs_base_url": f"{base}/{GFS_DIR}",
            "era5_zarr_url": f"{base}/{ERA5_STORE}",
            "climatology_zarr_url": f"{base}/{CLIMATOLOGY_STORE}",
            "grid_resolution_deg": self.grid.resolution_deg,
        }


def build_tree(
    root: Path,
    grid: Grid,
    start: datetime,
    days: int = 10,
    *,
    analysis_days: int = 2,
    forecast_leads: tuple[int, ...] = (12,),
    climatology_hours: tuple[int, ...] = (0, 12),
) -> SyntheticTree:
    """GFS analyses every 6 h and 00Z forecasts for ``analysis_days``; ERA5 at 00Z for ``start`` ..
    ``start + days``; climatology for those days of year (and the day before, for Day1 leads)."""
    root = Path(root)
    atmosphere = SyntheticAtmosphere(grid)
    tree = SyntheticTree(root, grid, forecast_leads=forecast_leads, climatology_hours=climatology_hours)
    for step in range(analysis_days * 4 + 1):
        valid = start + timedelta(hours=6 * step)
        write_synthetic_gfs(root / GFS_DIR, atmosphere, valid, 0)
        tree.analysis_times.append(valid)
    for day in range(analysis_days):
        init = start + timedelta(days=day)
        for lead in forecast_leads:
            write_synthetic_gfs(root / GFS_DIR, atmosphere, init, lead)
        tree.forecast_inits.append(init)
    tree.era5_times = [start + timedelta(days=d) for d in range(days + 1)]
    write_era5_zarr(root / ERA5_STORE, atmosphere, tree.era5_times)
    days_of_year = sorted({t.timetuple().tm_yday for t in tree.era5_times + tree.analysis_times})
    tree.climatology_days = days_of_year
    write_climatology_zarr(root / CLIMATOLOGY_STORE, atmosphere, days_of_year, climatology_hours)
    return tree
