"""The canonical grid: latitude 90 -> -90, longitude 0 -> 360 - step, float32 fields (SPEC section 7).

The production grid is 0.25 degree (721 x 1440); tests and benchmarks use coarser grids of the same
orientation (e.g. 1.5 degree, 121 x 240) so every code path is the same at any size.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Grid:
    resolution_deg: float = 0.25

    def __post_init__(self) -> None:
        for span in (180.0, 360.0):
            steps = span / self.resolution_deg
            if abs(steps - round(steps)) > 1e-9:
                raise ValueError(f"grid resolution {self.resolution_deg} does not divide {span} degrees")

    @property
    def nlat(self) -> int:
        return round(180.0 / self.resolution_deg) + 1

    @property
    def nlon(self) -> int:
        return round(360.0 / self.resolution_deg)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.nlat, self.nlon)

    @cached_property
    def latitudes(self) -> np.ndarray:
        return np.linspace(90.0, -90.0, self.nlat)

    @cached_property
    def longitudes(self) -> np.ndarray:
        return np.arange(self.nlon) * self.resolution_deg

    @classmethod
    def from_coords(cls, latitudes: np.ndarray, longitudes: np.ndarray) -> Grid:
        """The grid these coordinates describe, or ValueError if they are not a canonical grid."""
        lat = np.asarray(latitudes, dtype=np.float64)
        lon = np.asarray(longitudes, dtype=np.float64)
        if lat.ndim != 1 or lon.ndim != 1 or lat.size < 3 or lon.size < 3:
            raise ValueError("latitude and longitude must be 1-D with at least 3 points")
        grid = cls(round(abs(lon[1] - lon[0]), 6))
        if lat.size != grid.nlat or lon.size != grid.nlon:
            raise ValueError(f"coordinates {lat.size} x {lon.size} are not a global {grid.resolution_deg} grid")
        if not (np.allclose(lat, grid.latitudes, atol=1e-4) and np.allclose(lon, grid.longitudes, atol=1e-4)):
            raise ValueError("coordinates are not canonical: latitude must run 90 -> -90, longitude 0 -> 360")
        return grid


FULL_RESOLUTION = Grid(0.25)
