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


@dataclass(frozen=True, eq=False)
class CoordinateGrid:
    """A grid exactly as a miner's store declares it: 1-D coordinates in store order, any layout.

    Miners serve what their model writes (Aurora's cropped 720-row latitude, ascending latitude,
    longitude -180..180, float64 coordinates), and the reference validator interpolates whatever it
    gets onto the truth grid. The reader therefore keeps the coordinates as they are and fields in
    the store's own orientation; ``scoring.regrid`` decides, per scoring profile, how they reach the
    truth grid. A store that happens to be canonical is reported as a plain :class:`Grid`
    (``canonical()``), so the common case takes no interpolation.
    """

    latitudes: np.ndarray
    longitudes: np.ndarray

    def __post_init__(self) -> None:
        lat = np.asarray(self.latitudes, dtype=np.float64).ravel()
        lon = np.asarray(self.longitudes, dtype=np.float64).ravel()
        if lat.size < 2 or lon.size < 2 or not (np.all(np.isfinite(lat)) and np.all(np.isfinite(lon))):
            raise ValueError("latitude and longitude must be finite 1-D arrays of at least 2 points")
        lat.setflags(write=False)
        lon.setflags(write=False)
        object.__setattr__(self, "latitudes", lat)
        object.__setattr__(self, "longitudes", lon)

    @property
    def nlat(self) -> int:
        return int(self.latitudes.size)

    @property
    def nlon(self) -> int:
        return int(self.longitudes.size)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.nlat, self.nlon)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Grid):
            return self.shape == other.shape and bool(
                np.array_equal(self.latitudes, other.latitudes) and np.array_equal(self.longitudes, other.longitudes)
            )
        if not isinstance(other, CoordinateGrid):
            return NotImplemented
        return bool(
            np.array_equal(self.latitudes, other.latitudes) and np.array_equal(self.longitudes, other.longitudes)
        )

    def __hash__(self) -> int:
        return hash((self.latitudes.tobytes(), self.longitudes.tobytes()))

    def canonical(self) -> Grid | None:
        """The canonical :class:`Grid` with exactly these coordinates (to 1e-4 degree), else None."""
        step = abs(float(self.longitudes[1] - self.longitudes[0]))
        try:
            grid = Grid(round(step, 6))
        except ValueError:
            return None
        if self.shape != grid.shape:
            return None
        if np.allclose(self.latitudes, grid.latitudes, atol=1e-4) and np.allclose(
            self.longitudes, grid.longitudes, atol=1e-4
        ):
            return grid
        return None


AnyGrid = Grid | CoordinateGrid
