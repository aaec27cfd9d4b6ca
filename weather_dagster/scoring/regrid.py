"""Linear interpolation of a miner field onto the truth grid, only when the two grids differ.

Both grids are canonical (latitude 90 -> -90, longitude 0 -> 360 - step), so bilinear interpolation
reduces to two 1-D index maps; longitude wraps around (the column after 360 - step is 0).
"""

from __future__ import annotations

import numpy as np

from weather_dagster.reference.grid import Grid


def _axis_map(src: np.ndarray, dst: np.ndarray, periodic: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (i0, i1) and fraction t so that dst = (1 - t) src[i0] + t src[i1]."""
    step = src[1] - src[0]
    pos = (dst - src[0]) / step
    if periodic is not None:
        n = src.size
        pos = np.mod(pos, n)
        i0 = np.floor(pos).astype(np.int64)
        t = pos - i0
        return i0 % n, (i0 + 1) % n, t
    pos = np.clip(pos, 0, src.size - 1)
    i0 = np.minimum(np.floor(pos).astype(np.int64), src.size - 2)
    return i0, i0 + 1, pos - i0


def to_grid(field: np.ndarray, source: Grid, target: Grid) -> np.ndarray:
    """``field`` (on ``source``) on ``target``; the same array when the grids are equal."""
    if source == target:
        return field
    if field.shape != source.shape:
        raise ValueError(f"field shape {field.shape} does not match its grid {source.shape}")
    la0, la1, lt = _axis_map(source.latitudes, target.latitudes, None)
    lo0, lo1, nt = _axis_map(source.longitudes, target.longitudes, 360.0)
    data = field.astype(np.float64)
    rows = data[la0] * (1 - lt)[:, None] + data[la1] * lt[:, None]
    out = rows[:, lo0] * (1 - nt)[None, :] + rows[:, lo1] * nt[None, :]
    return out.astype(np.float32)
