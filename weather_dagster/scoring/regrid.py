"""Miner fields onto the truth grid, as the scoring profile says.

Two behaviours, chosen by the profile's switches (``settings/profile.py``):

- ``reference`` reproduces Gaia v2.9.96, which always calls ``xarray.DataArray.interp_like(truth,
  method="linear", kwargs={"fill_value": None})`` (``WT/processing/weather_logic.py`` ~2923,
  ``WT/weather_scoring_mechanism.py`` ~2228). xarray splits that into one scipy ``interp1d`` per
  axis (latitude, then longitude), with ``fill_value=None`` meaning NaN outside the source range
  and no wrap-around in longitude. ``interp1d`` evaluates ``y_lo + slope * (x - x_lo)`` with the
  bracketing pair found by ``searchsorted(side="left")`` clipped to ``[1, n - 1]``, so even on an
  identical grid each target node reads two source nodes and a NaN spreads to its neighbour (``0 *
  NaN`` is NaN). Before that the reference maps a -180..180 longitude to 0..360 and sorts it
  (``weather_logic.py`` ~2894-2906); ``interp1d`` sorts any coordinate itself, so ascending
  latitude is handled too.
- ``corrected`` interpolates only when the grids differ, bilinear, periodic in longitude, NaN only
  where a target latitude lies outside the miner's latitude range (the edge seam rule then fills it).

Both return (nlat, nlon) arrays on ``target``: float64 when interpolated (as ``interp_like``),
float32 when the field was already on the target grid (the reference's ``interp_like`` reproduces
such a field to the last bit but one).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numba
import numpy as np

from weather_dagster.reference.grid import AnyGrid, CoordinateGrid, Grid
from weather_dagster.settings.profile import ScoringQuirks


def _coordinates(grid: AnyGrid) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(grid.latitudes, dtype=np.float64), np.asarray(grid.longitudes, dtype=np.float64)


def _wrap_longitudes(lon: np.ndarray, target_lon: np.ndarray) -> np.ndarray:
    """The reference's longitude convention fix: a miner in -180..180 onto a 0..360 truth."""
    if lon.min() < 0 <= lon.max() and target_lon.min() >= 0 and target_lon.max() > 180:
        return np.mod(lon, 360.0)
    return lon


def interp_axis(data: np.ndarray, src: np.ndarray, dst: np.ndarray, axis: int, periodic: bool) -> np.ndarray:
    """scipy ``interp1d(kind="linear", bounds_error=False, fill_value=NaN)`` along ``axis``.

    ``periodic`` adds the wrap-around pair (last node, first node + 360) so longitudes between the
    last and the first column are interpolated instead of NaN.
    """
    order = np.argsort(src, kind="stable")
    x = src[order]
    y = np.take(data, order, axis=axis)
    if periodic:
        x = np.concatenate([x, [x[0] + 360.0]])
        y = np.concatenate([y, np.take(y, [0], axis=axis)], axis=axis)
        dst = x[0] + np.mod(dst - x[0], 360.0)
    idx = np.clip(np.searchsorted(x, dst, side="left"), 1, x.size - 1)
    lo, hi = idx - 1, idx
    shape = [1] * data.ndim
    shape[axis] = dst.size
    x_lo = x[lo].reshape(shape)
    slope = (np.take(y, hi, axis=axis) - np.take(y, lo, axis=axis)) / (x[hi] - x[lo]).reshape(shape)
    out = slope * (dst.reshape(shape) - x_lo) + np.take(y, lo, axis=axis)
    outside = (dst < x[0]) | (dst > x[-1])
    if outside.any():
        index = [slice(None)] * data.ndim
        index[axis] = outside
        out[tuple(index)] = np.nan
    return out


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "nsz", "contract"})
def _has_non_finite(data):  # pragma: no cover - compiled
    # ``x * 0`` is 0 for a finite x and NaN for NaN or +-inf, so a row's sum of them is 0 exactly
    # when the row is all finite. Reassociation lets the row sum vectorise (4x the per-cell test);
    # no ``nnan``/``ninf`` flag, so NaN arithmetic stays IEEE. Stops at the first bad row.
    nlat, nlon = data.shape
    zero = data.dtype.type(0)
    for i in range(nlat):
        acc = zero
        for j in range(nlon):
            acc += data[i, j] * zero
        if acc != 0:
            return True
    return False


def _may_have_nan(data: np.ndarray) -> bool:
    """False only when every value is finite (one compiled pass that stops at the first gap).

    Only decides whether the NaN-spreading pass runs: on an all-finite field that pass changes
    nothing, so the answer never changes a value, only the time spent.
    """
    if data.ndim != 2:
        with np.errstate(over="ignore", invalid="ignore"):
            return not np.isfinite(np.add.reduce(data, axis=None, dtype=np.float64))
    return bool(_has_non_finite(data))


def _spread_along(data: np.ndarray, axis: int) -> np.ndarray:
    """``interp1d`` onto its own nodes along ``axis`` (coordinates ascending): NaN spreads.

    Node k reads nodes (k - 1, k); node 0 reads (0, 1). Finite cells keep their value.
    """
    bad = ~np.isfinite(data)
    spread = bad.copy()
    moved = np.moveaxis(spread, axis, 0)
    original = np.moveaxis(bad, axis, 0)
    moved[1:] |= original[:-1]
    moved[0] |= original[1]
    out = np.array(data, dtype=data.dtype, copy=True)
    out[spread & ~bad] = np.nan
    return out


@dataclass(frozen=True)
class _AxisPlan:
    """How one axis reaches the target: the same points (maybe reordered), or interpolation."""

    src: np.ndarray
    dst: np.ndarray
    same: bool  # the points match to 1e-6 degree: no arithmetic
    order: np.ndarray | None  # the reordering onto the target's order (None: already in it)
    descending: bool  # the target runs downwards (NaN spreading follows ascending order)


def _axis_plan(src: np.ndarray, dst: np.ndarray) -> _AxisPlan:
    descending = bool(dst[0] > dst[-1])
    if src.size == dst.size:
        order = np.argsort(src, kind="stable")
        if descending:
            order = order[::-1]
        if np.allclose(src[order], dst, atol=1e-6):
            keep = None if np.array_equal(order, np.arange(src.size)) else order
            return _AxisPlan(src, dst, True, keep, descending)
    return _AxisPlan(src, dst, False, None, descending)


@functools.lru_cache(maxsize=64)
def _grid_plan(source: AnyGrid, target: Grid, not_periodic: bool) -> tuple[_AxisPlan, _AxisPlan]:
    """Both axes' plans, once per (miner grid, truth grid): every field of a store shares them."""
    lat, lon = _coordinates(source)
    target_lat, target_lon = _coordinates(target)
    lon = _wrap_longitudes(lon, target_lon) if not_periodic else np.mod(lon, 360.0)
    return _axis_plan(lat, target_lat), _axis_plan(lon, target_lon)


def _to_axis(data: np.ndarray, plan: _AxisPlan, axis: int, *, periodic: bool, spread: bool) -> np.ndarray:
    """One axis onto the target coordinates; no arithmetic when the points are the same."""
    if not plan.same:
        return interp_axis(np.asarray(data, dtype=np.float64), plan.src, plan.dst, axis, periodic)
    if plan.order is not None:
        data = np.take(data, plan.order, axis=axis)
    if spread:
        # ascending-coordinate order decides who reads whom: flip a descending axis around it
        if plan.descending:
            return np.flip(_spread_along(np.flip(data, axis), axis), axis)
        return _spread_along(data, axis)
    return data


def same_points(source: AnyGrid, target: Grid, quirks: ScoringQuirks) -> bool:
    """Whether ``to_truth_grid`` only reorders the cells of a field (no interpolation)."""
    lat_plan, lon_plan = _plans(source, target, quirks)
    return lat_plan.same and lon_plan.same


def _plans(source: AnyGrid, target: Grid, quirks: ScoringQuirks) -> tuple[_AxisPlan, _AxisPlan]:
    try:
        return _grid_plan(source, target, quirks.interp_not_periodic)
    except TypeError:  # a grid that cannot be hashed: plan it for this field only
        return _grid_plan.__wrapped__(source, target, quirks.interp_not_periodic)


def to_truth_grid(
    field: np.ndarray, source: AnyGrid, target: Grid, quirks: ScoringQuirks, *, finite: bool | None = None
) -> np.ndarray:
    """``field`` (on the miner's ``source`` grid, in store order) on the truth grid ``target``.

    ``finite``: whether every value of ``field`` is finite, when the caller already knows (one
    compiled pass less); NaN spreading only runs on a field that may have gaps, tested once here
    otherwise (reordering or interpolating finite values leaves them finite).
    """
    if field.shape != source.shape:
        raise ValueError(f"field shape {field.shape} does not match its grid {source.shape}")
    lat_plan, lon_plan = _plans(source, target, quirks)
    spread = quirks.interp_like_always and (not finite if finite is not None else _may_have_nan(field))
    rows = _to_axis(field, lat_plan, 0, periodic=False, spread=spread)
    out = _to_axis(rows, lon_plan, 1, periodic=not quirks.interp_not_periodic, spread=spread)
    # An interpolated field stays float64, like interp_like's output; one on its own grid keeps its dtype.
    dtype = np.float64 if out.dtype == np.float64 else np.float32
    return np.ascontiguousarray(out, dtype=dtype)


def to_grid(field: np.ndarray, source: AnyGrid, target: Grid) -> np.ndarray:
    """Truth-side regridding (GFS, climatology onto the truth grid): bilinear, periodic, no quirks.

    Truth and climatology have no NaN and share the canonical grid in production, so this is the
    identity there; the reference's ``interp_like`` of a NaN-free field on the same grid is too.
    """
    if source == target:
        return field
    if isinstance(source, CoordinateGrid) and source.canonical() == target:
        return field
    lat, lon = _coordinates(source)
    target_lat, target_lon = _coordinates(target)
    if field.shape != (lat.size, lon.size):
        raise ValueError(f"field shape {field.shape} does not match its grid {(lat.size, lon.size)}")
    data = np.asarray(field, dtype=np.float64)
    # Truth grids are global: clamp latitude to the source range instead of leaving NaN rows.
    clamped = np.clip(target_lat, lat.min(), lat.max())
    rows = interp_axis(data, lat, clamped, axis=0, periodic=False)
    out = interp_axis(rows, np.mod(lon, 360.0), target_lon, axis=1, periodic=True)
    return out.astype(np.float32)
