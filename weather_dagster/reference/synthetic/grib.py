"""Write GFS-style GRIB2 files plus their ``.idx`` with eccodes, from the synthetic atmosphere.

The files mimic NOAA's layout closely enough for the real loader to run unchanged: NCEP centre,
simple packing (fast to decode), north-to-south rows, one message per (variable, level), extra
messages the validator does not need (so range reads can be checked), and an ``.idx`` with
zero-based byte offsets in NOAA's ``n:offset:d=YYYYMMDDHH:VAR:LEVEL:FTIME:`` form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import eccodes
import numpy as np

from weather_dagster.reference.gfs import gfs_url
from weather_dagster.reference.grid import Grid
from weather_dagster.reference.variables import GRAVITY, PRESSURE_LEVELS_HPA, SURFACE_VARIABLES, VARIABLES

# (discipline, category, number) of the GRIB2 parameters we write, by .idx name.
PARAMETERS: dict[str, tuple[int, int, int]] = {
    "TMP": (0, 0, 0),
    "UGRD": (0, 2, 2),
    "VGRD": (0, 2, 3),
    "PRMSL": (0, 3, 1),
    "HGT": (0, 3, 5),
    "SPFH": (0, 1, 0),
    "RH": (0, 1, 1),
    "VVEL": (0, 2, 8),
}
EXTRA_LEVELS_HPA = (975, 950, 900)  # present in real GFS, not scored: must never be downloaded
MISSING_VALUE = 9999.0


@dataclass(frozen=True)
class Message:
    idx_name: str  # TMP, UGRD, ...
    type_of_level: str  # isobaricInhPa, heightAboveGround, meanSea
    level: int  # hPa, metres, or 0
    values: np.ndarray  # (nlat, nlon) on the grid, north to south
    step_hours: int = 0

    @property
    def idx_level(self) -> str:
        if self.type_of_level == "isobaricInhPa":
            return f"{self.level} mb"
        if self.type_of_level == "heightAboveGround":
            return f"{self.level} m above ground"
        return "mean sea level"


def ftime_label(step_hours: int) -> str:
    return "anl" if step_hours == 0 else f"{step_hours} hour fcst"


def grid_keys(grid: Grid) -> tuple[tuple[str, int | float], ...]:
    """The eccodes keys of a canonical regular lat-lon grid (north to south), for GRIB1 and GRIB2."""
    return (
        ("Ni", grid.nlon),
        ("Nj", grid.nlat),
        ("latitudeOfFirstGridPointInDegrees", float(grid.latitudes[0])),
        ("longitudeOfFirstGridPointInDegrees", float(grid.longitudes[0])),
        ("latitudeOfLastGridPointInDegrees", float(grid.latitudes[-1])),
        ("longitudeOfLastGridPointInDegrees", float(grid.longitudes[-1])),
        ("iDirectionIncrementInDegrees", grid.resolution_deg),
        ("jDirectionIncrementInDegrees", grid.resolution_deg),
        ("jScansPositively", 0),
    )


def encode(message: Message, grid: Grid, init_time: datetime) -> bytes:
    """One GRIB2 message (simple packing, 16 bits); NaN become missing points via a bitmap."""
    sample = "regular_ll_pl_grib2" if message.type_of_level == "isobaricInhPa" else "regular_ll_sfc_grib2"
    handle = eccodes.codes_grib_new_from_samples(sample)
    try:
        for key, value in (
            ("centre", 7),
            *grid_keys(grid),
            ("iScansNegatively", 0),
            ("dataDate", int(init_time.strftime("%Y%m%d"))),
            ("dataTime", init_time.hour * 100),
            ("stepUnits", 1),
            ("forecastTime", message.step_hours),
            ("typeOfLevel", message.type_of_level),
            ("level", message.level),
        ):
            eccodes.codes_set(handle, key, value)
        discipline, category, number = PARAMETERS[message.idx_name]
        eccodes.codes_set(handle, "discipline", discipline)
        eccodes.codes_set(handle, "parameterCategory", category)
        eccodes.codes_set(handle, "parameterNumber", number)
        eccodes.codes_set(handle, "packingType", "grid_simple")
        eccodes.codes_set(handle, "bitsPerValue", 16)
        values = np.asarray(message.values, dtype=np.float64).ravel()
        if not np.all(np.isfinite(values)):
            eccodes.codes_set(handle, "bitmapPresent", 1)
            eccodes.codes_set(handle, "missingValue", MISSING_VALUE)
            values = np.where(np.isfinite(values), values, MISSING_VALUE)
        eccodes.codes_set_values(handle, values)
        return eccodes.codes_get_message(handle)
    finally:
        eccodes.codes_release(handle)


def write_grib(path: Path, messages: Iterable[Message], grid: Grid, init_time: datetime) -> list[str]:
    """Write the messages and ``path.idx``; returns the ``.idx`` lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    offset = 0
    stamp = init_time.strftime("%Y%m%d%H")
    with open(path, "wb") as out:
        for number, message in enumerate(messages, start=1):
            data = encode(message, grid, init_time)
            out.write(data)
            lines.append(
                f"{number}:{offset}:d={stamp}:{message.idx_name}:{message.idx_level}:{ftime_label(message.step_hours)}:"
            )
            offset += len(data)
    Path(str(path) + ".idx").write_text("\n".join(lines) + "\n")
    return lines


FieldFunction = Callable[[str, int | None], np.ndarray]


def gfs_messages(
    values: FieldFunction, grid: Grid, step_hours: int, levels: tuple[int, ...] = PRESSURE_LEVELS_HPA
) -> list[Message]:
    """The messages of one GFS file in a NOAA-like order, scored fields among unscored ones.

    ``values(variable, level)`` gives the canonical field (z in m2 s-2; written as gh in gpm).
    """
    messages: list[Message] = []
    all_levels = tuple(sorted(set(levels) | set(EXTRA_LEVELS_HPA)))
    filler = np.zeros(grid.shape, dtype=np.float32)
    for name in ("z", "t", "RH", "q", "VVEL", "u", "v"):
        for level in all_levels:
            scored = name in VARIABLES and level in levels
            if name in VARIABLES:
                spec = VARIABLES[name]
                data = values(name, level) if scored else values(name, min(levels, key=lambda p: abs(p - level)))
                if name == "z":
                    data = data / GRAVITY
                messages.append(Message(spec.idx_name, "isobaricInhPa", level, data, step_hours))
            else:
                messages.append(Message(name, "isobaricInhPa", level, filler + level / 10.0, step_hours))
    messages.append(Message("HGT", "heightAboveGround", 80, filler + 80.0, step_hours))  # unscored
    for name in SURFACE_VARIABLES:
        spec = VARIABLES[name]
        messages.append(
            Message(spec.idx_name, spec.grib_type_of_level, spec.grib_level or 0, values(name, None), step_hours)
        )
    return messages


def gfs_path(root: Path, init_time: datetime, lead_hours: int) -> Path:
    """Where NOAA keeps this file, relative to the GFS base URL (same layout under ``root``, including
    the ``atmos/`` part only from 2021-03-22 12Z): the adapter's own URL rule, so they cannot drift."""
    return Path(gfs_url(str(root), init_time, lead_hours))


def write_synthetic_gfs(root: Path, atmosphere, init_time: datetime, lead_hours: int) -> Path:
    """One GFS file from the synthetic atmosphere: f000 is the truth ``field`` at the valid time,
    other leads the atmosphere's ``gfs_forecast``."""
    if lead_hours == 0:
        valid = init_time + timedelta(hours=0)

        def values(name: str, level: int | None) -> np.ndarray:
            return atmosphere.field(name, level, valid)
    else:

        def values(name: str, level: int | None) -> np.ndarray:
            return atmosphere.gfs_forecast(name, level, init_time, lead_hours)

    path = gfs_path(root, init_time, lead_hours)
    write_grib(path, gfs_messages(values, atmosphere.grid, lead_hours), atmosphere.grid, init_time)
    return path
