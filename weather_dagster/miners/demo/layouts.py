"""Store layouts real miners serve (issue 10): the same forecast, laid out as each model writes it.

- ``canonical``: latitude 90 -> -90 (721 rows at 0.25 deg), longitude 0 -> 359.75, little-endian float32;
- ``aurora_720``: Aurora's ``Batch.crop`` drops the last latitude row when ``nlat % 4 == 1`` and Gaia
  writes that cropped, float32 latitude as it is (90 -> -89.75);
- ``lat_ascending``: latitude -90 -> 90;
- ``lon_pm180``: longitude -180 -> 180 - step;
- ``big_endian``: fields stored as ``>f4``;
- ``float64``: fields stored as ``<f8``.
"""

from __future__ import annotations

import numpy as np

LAYOUTS = ("canonical", "aurora_720", "lat_ascending", "lon_pm180", "big_endian", "float64")


def field_dtype(layout: str) -> str:
    return {"big_endian": ">f4", "float64": "<f8"}.get(layout, "<f4")


def coordinates(layout: str, latitudes: np.ndarray, longitudes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lat, lon = np.asarray(latitudes, "<f8"), np.asarray(longitudes, "<f8")
    if layout == "aurora_720":
        lat = lat[:-1].astype("<f4")
    elif layout == "lat_ascending":
        lat = lat[::-1].copy()
    elif layout == "lon_pm180":
        lon = np.sort(np.where(lon >= 180.0, lon - 360.0, lon))
    return lat, lon


def arrange(layout: str, values: np.ndarray, longitudes: np.ndarray) -> np.ndarray:
    """A canonical (nlat, nlon) field in ``layout``'s row / column order and dtype."""
    if layout == "aurora_720":
        values = values[:-1]
    elif layout == "lat_ascending":
        values = values[::-1]
    elif layout == "lon_pm180":
        values = values[:, np.argsort(np.where(longitudes >= 180.0, longitudes - 360.0, longitudes), kind="stable")]
    return np.ascontiguousarray(values, dtype=field_dtype(layout))
