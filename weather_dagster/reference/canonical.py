"""The canonical in-memory form of reference data, shared by every adapter and the cache.

One ``xr.Dataset`` per partition: surface variables ``(lat, lon)``, atmospheric variables
``(pressure_level, lat, lon)``, float32, latitude 90 -> -90, longitude 0 -> 360 - step, CF units.
Every field is checked before it can enter a dataset, so a bad source fails loudly at download time
instead of producing a silently wrong score. A wrong grid or a NaN fails the whole partition (the
source is broken or not yet published); a value outside the field's physical range quarantines just
that field: it is stored as NaN and named in the ``rejected_fields`` attribute, and reading it raises
a :class:`SourceError` naming it, so only the scores that need that field stop.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from weather_dagster.core.errors import SourceError
from weather_dagster.reference.cache import RAW_FIELDS, RawFields
from weather_dagster.reference.grid import Grid
from weather_dagster.reference.variables import VARIABLES, plausible_range

REJECTED = "rejected_fields"  # dataset attribute: {field label: problem}


def field_label(variable: str, level: int | None, lead_hours: int | None = None) -> str:
    """``z1000``, ``2t``; with a lead (GFS forecast partitions) ``z1000@12h``."""
    label = variable if level is None else f"{variable}{level}"
    return label if lead_hours is None else f"{label}@{lead_hours}h"


def range_problem(values: np.ndarray, variable: str, level: int | None) -> str | None:
    """Why a finite field is implausible (outside its per-level physical range), or None."""
    low, high = plausible_range(variable, level)
    vmin, vmax = float(np.min(values)), float(np.max(values))
    if vmin < low or vmax > high:
        where = f"{variable}" + (f" at {level} hPa" if level is not None else "")
        return f"{where} outside its plausible range [{low:.6g}, {high:.6g}]: min {vmin:g}, max {vmax:g}"
    return None


def check_field(values: np.ndarray, variable: str, level: int | None, grid: Grid, url: str) -> str | None:
    """Raise for a wrong shape or non-finite values; return the range problem (None if plausible).

    The caller quarantines a field with a range problem (:func:`quarantine`) instead of failing
    every other field of the partition with it.
    """
    where = f"{variable}" + (f" at {level} hPa" if level is not None else "")
    if values.shape != grid.shape:
        raise SourceError(url, f"wrong grid for {where}: shape {values.shape}, expected {grid.shape}")
    finite = np.isfinite(values)
    if not finite.all():
        raise SourceError(url, f"NaN or infinite values in {where}: {int((~finite).sum())} of {values.size} points")
    return range_problem(values, variable, level)


def check_fields(
    fields: dict[tuple[str, int | None], np.ndarray], grid: Grid, url: str, lead_hours: int | None = None
) -> dict[str, str]:
    """Check every field; out-of-range ones are replaced by NaN in ``fields`` and returned by label."""
    rejected: dict[str, str] = {}
    for (name, level), values in fields.items():
        problem = check_field(values, name, level, grid, url)
        if problem is not None:
            rejected[field_label(name, level, lead_hours)] = problem
            fields[(name, level)] = np.full(values.shape, np.nan, dtype=np.float32)
    return rejected


def canonical_dataset(
    fields: dict[tuple[str, int | None], np.ndarray],
    variables: tuple[str, ...],
    levels: tuple[int, ...],
    grid: Grid,
    attrs: dict[str, Any] | None = None,
) -> xr.Dataset:
    data_vars = {}
    for name in variables:
        units = {"units": VARIABLES[name].units}
        if VARIABLES[name].atmospheric:
            stack = np.stack([fields[(name, level)] for level in levels]).astype(np.float32, copy=False)
            data_vars[name] = (("pressure_level", "lat", "lon"), stack, units)
        else:
            data_vars[name] = (("lat", "lon"), fields[(name, None)].astype(np.float32, copy=False), units)
    return xr.Dataset(
        data_vars,
        coords={
            "pressure_level": ("pressure_level", np.array(levels, dtype=np.int32)),
            "lat": ("lat", grid.latitudes),
            "lon": ("lon", grid.longitudes),
        },
        attrs=dict(attrs or {}),
    )


def field_of(dataset: xr.Dataset, variable: str, level_hpa: int | None, **selection: Any) -> np.ndarray:
    """One float32 2-D field out of a canonical dataset (``selection`` e.g. ``lead_hours=12``)."""
    if variable not in dataset:
        raise KeyError(f"variable {variable!r} is not in this reference dataset")
    rejected = dataset.attrs.get(REJECTED) or {}
    for label in (field_label(variable, level_hpa), field_label(variable, level_hpa, selection.get("lead_hours"))):
        if label in rejected:
            url = str(dataset.attrs.get("source_url", "?"))
            raise SourceError(url, f"{label} was rejected when the source was read: {rejected[label]}")
    atmospheric = VARIABLES[variable].atmospheric
    if atmospheric and level_hpa is None:
        raise ValueError(f"{variable} needs a pressure level")
    raw = _raw_lookup(dataset, variable, level_hpa, selection)
    if raw is not None:
        values = raw[0].field(variable, raw[1])
        if values is not None:
            return values
    da = dataset[variable]
    if selection:
        da = da.sel(selection)
    if atmospheric:
        if level_hpa not in da["pressure_level"].values:
            raise KeyError(f"level {level_hpa} hPa of {variable} is not in this reference dataset")
        da = da.sel(pressure_level=level_hpa)
    return np.ascontiguousarray(da.values, dtype=np.float32)


def cached_digest_of(dataset: xr.Dataset, variable: str, level_hpa: int | None, **selection: Any) -> str | None:
    """The digest the cache recorded for the field :func:`field_of` returns from a lazily read
    entry (the same selection), or None (not a cached entry, not a raw field, or its file changed)."""
    raw = _raw_lookup(dataset, variable, level_hpa, selection) if variable in VARIABLES else None
    return None if raw is None else raw[0].digest(variable, raw[1])


def _raw_lookup(
    dataset: xr.Dataset, variable: str, level_hpa: int | None, selection: dict[str, Any]
) -> tuple[RawFields, dict[str, int]] | None:
    """A lazily read entry's :class:`RawFields` and the integer positions of a field in it (the same
    labels ``.sel`` would take), or None when the dataset is not such an entry.

    An absent label returns an incomplete index, so the xarray path runs and raises as it always did.
    """
    raw = dataset.encoding.get(RAW_FIELDS)
    if raw is None:
        return None
    level = level_hpa if VARIABLES[variable].atmospheric else None
    wanted = {**selection, **({} if level is None else {"pressure_level": level})}
    index = {}
    for dim, label in wanted.items():
        position = raw.position(dim, label, lambda dim=dim: dataset[dim].values if dim in dataset.coords else None)
        if position is not None:
            index[dim] = position
    return raw, index


def summarize(dataset: xr.Dataset) -> dict[str, dict[str, float]]:
    """Per-variable min/max, for asset metadata."""
    return {name: {"min": float(dataset[name].min()), "max": float(dataset[name].max())} for name in dataset.data_vars}


def check_dataset(dataset: xr.Dataset, grid: Grid) -> dict[str, str]:
    """Problems found in a canonical dataset by check name (grid, units, nan); empty when all pass.

    Quarantined fields (NaN by design) fail the units check by name, not the NaN check.
    """
    problems: dict[str, str] = {}
    rejected = dataset.attrs.get(REJECTED) or {}
    if rejected:
        problems["units"] = "rejected fields: " + "; ".join(f"{k}: {v}" for k, v in sorted(rejected.items()))
    try:
        found = Grid.from_coords(dataset["lat"].values, dataset["lon"].values)
        if found != grid:
            problems["grid"] = f"{found.resolution_deg} degree, expected {grid.resolution_deg}"
    except (ValueError, KeyError) as exc:
        problems["grid"] = str(exc)
    for name in dataset.data_vars:
        da = dataset[name]
        if da.dtype != np.float32:
            problems.setdefault("grid", f"{name} is {da.dtype}, expected float32")
        spec = VARIABLES.get(str(name))
        if spec is None:
            continue
        if da.attrs.get("units") != spec.units:
            problems["units"] = f"{name} units {da.attrs.get('units')!r}, expected {spec.units!r}"
        for label, level, values in _fields_of(da, str(name)):
            if any(key == label or key.startswith(label + "@") for key in rejected):
                continue
            if not np.isfinite(values).all():
                problems.setdefault("nan", f"{label} has NaN or infinite values")
                continue
            problem = range_problem(values, str(name), level)
            if problem is not None:
                problems.setdefault("units", problem)
    return problems


def _fields_of(da: xr.DataArray, name: str):
    """(label, level, values) per pressure level (all leads together): ranges are per level."""
    if "pressure_level" not in da.dims:
        yield field_label(name, None), None, da.values
        return
    for level in da["pressure_level"].values:
        yield field_label(name, int(level)), int(level), da.sel(pressure_level=level).values


def orient(da: xr.DataArray, grid: Grid, url: str) -> np.ndarray:
    """A (..., lat, lon) array turned to the canonical orientation and checked against ``grid``.

    Sources differ: latitude ascending or descending, longitude 0..360 or -180..180.
    """
    lat_name = "latitude" if "latitude" in da.dims else "lat"
    lon_name = "longitude" if "longitude" in da.dims else "lon"
    if lat_name not in da.dims or lon_name not in da.dims:
        raise SourceError(url, f"{da.name}: no latitude/longitude dimensions (dims {da.dims})")
    da = da.assign_coords({lon_name: da[lon_name] % 360.0}).sortby(lon_name).sortby(lat_name, ascending=False)
    try:
        found = Grid.from_coords(da[lat_name].values, da[lon_name].values)
    except ValueError as exc:
        raise SourceError(url, f"wrong grid for {da.name}: {exc}") from exc
    if found != grid:
        raise SourceError(
            url, f"wrong grid for {da.name}: {found.resolution_deg} degree, expected {grid.resolution_deg}"
        )
    other = [d for d in da.dims if d not in (lat_name, lon_name)]
    return np.asarray(da.transpose(*other, lat_name, lon_name).values, dtype=np.float32)
