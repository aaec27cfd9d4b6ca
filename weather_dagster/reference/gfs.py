"""GFS GRIB2 over HTTP: URL, ``.idx`` index, range reads of the scored messages, cfgrib decode.

Only the messages of the scored variables and levels are downloaded (driven by the ``.idx``), each
is checked to be a whole GRIB message, then decoded with cfgrib one variable at a time with a
``typeOfLevel`` filter: an unfiltered open of mixed level types silently drops variables (SPEC 7).
"""

from __future__ import annotations

import itertools
import struct
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np
import xarray as xr

from weather_dagster.core.errors import SourceError
from weather_dagster.reference.canonical import REJECTED, canonical_dataset, check_fields
from weather_dagster.reference.grid import Grid
from weather_dagster.reference.http import HttpReader
from weather_dagster.reference.variables import GRAVITY, VARIABLES


@dataclass(frozen=True)
class IdxEntry:
    number: int
    start: int
    end: int | None  # exclusive; None for the last message (runs to the end of the file)
    date: str
    variable: str
    level: str
    ftime: str


# GFS v16 (NWS notice SCN 21-20) moved the files under ``atmos/`` from its first cycle, 2021-03-22 12Z;
# the archive keeps older cycles at ``gfs.YYYYMMDD/HH/gfs.tHHz...`` with no ``atmos/`` part.
ATMOS_PATH_SINCE = datetime(2021, 3, 22, 12, tzinfo=UTC)


def gfs_url(base_url: str, init_time: datetime, lead_hours: int) -> str:
    cycle = f"{init_time:%H}"
    when = init_time.replace(tzinfo=UTC) if init_time.tzinfo is None else init_time
    atmos = "atmos/" if when >= ATMOS_PATH_SINCE else ""
    return f"{base_url.rstrip('/')}/gfs.{init_time:%Y%m%d}/{cycle}/{atmos}gfs.t{cycle}z.pgrb2.0p25.f{lead_hours:03d}"


def ftime_label(lead_hours: int) -> str:
    return "anl" if lead_hours == 0 else f"{lead_hours} hour fcst"


def idx_level(variable: str, level_hpa: int | None) -> str:
    spec = VARIABLES[variable]
    if spec.atmospheric:
        return f"{level_hpa} mb"
    if spec.grib_type_of_level == "heightAboveGround":
        return f"{spec.grib_level} m above ground"
    return "mean sea level"


def parse_idx(text: str, url: str) -> list[IdxEntry]:
    """Parse NOAA's ``.idx``: ``n:offset:d=YYYYMMDDHH:VAR:LEVEL:FTIME:``; offsets are zero-based."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(":")
        if len(parts) < 6 or not parts[1].isdigit() or not parts[2].startswith("d="):
            raise SourceError(url, f"malformed .idx line {number}: {line[:120]!r}")
        rows.append((int(parts[0]), int(parts[1]), parts[2][2:], parts[3], parts[4], parts[5]))
    if not rows:
        raise SourceError(url, "empty .idx")
    offsets = sorted({r[1] for r in rows})
    next_offset = dict(itertools.pairwise(offsets))
    return [IdxEntry(n, start, next_offset.get(start), d, var, lvl, ft) for n, start, d, var, lvl, ft in rows]


def select_messages(
    entries: Iterable[IdxEntry], wanted: Iterable[tuple[str, int | None]], lead_hours: int, url: str
) -> dict[tuple[str, int | None], IdxEntry]:
    """The first ``.idx`` entry of each wanted (variable, level) at this lead; a missing one is an error."""
    by_key: dict[tuple[str, str, str], IdxEntry] = {}
    for entry in entries:
        by_key.setdefault((entry.variable, entry.level, entry.ftime), entry)
    chosen = {}
    missing = []
    ftime = ftime_label(lead_hours)
    for variable, level in wanted:
        key = (VARIABLES[variable].idx_name, idx_level(variable, level), ftime)
        if key in by_key:
            chosen[(variable, level)] = by_key[key]
        else:
            missing.append(":".join(key))
    if missing:
        raise SourceError(url, f"missing variable or level in the .idx: {', '.join(missing[:10])}")
    return chosen


def merge_ranges(entries: Iterable[IdxEntry]) -> list[tuple[int, int | None, int]]:
    """(start, end, message count) per request: adjacent messages become one request, and nothing
    between wanted messages is ever read. ``end`` None runs to the end of the file."""
    ranges: list[list] = []
    for entry in sorted(entries, key=lambda e: e.start):
        if ranges and ranges[-1][1] == entry.start:
            ranges[-1][1] = entry.end
            ranges[-1][2] += 1
        else:
            ranges.append([entry.start, entry.end, 1])
    return [(int(a), b, int(n)) for a, b, n in ranges]


def split_messages(data: bytes, url: str, max_message_bytes: int) -> list[bytes]:
    """Split downloaded bytes into whole GRIB2 messages; any truncation is an error, never a partial field."""
    messages = []
    pos = 0
    while pos < len(data):
        if data[pos : pos + 4] != b"GRIB" or len(data) - pos < 16:
            raise SourceError(url, f"not a GRIB message at byte {pos} of the downloaded range")
        (length,) = struct.unpack(">Q", data[pos + 8 : pos + 16])
        if length > max_message_bytes:
            raise SourceError(url, f"GRIB message of {length} bytes exceeds the {max_message_bytes}-byte limit")
        if pos + length > len(data) or data[pos + length - 4 : pos + length] != b"7777":
            raise SourceError(url, f"truncated GRIB message at byte {pos}: declared {length}, have {len(data) - pos}")
        messages.append(data[pos : pos + length])
        pos += length
    return messages


def fetch_messages(
    reader: HttpReader,
    url: str,
    chosen: dict[tuple[str, int | None], IdxEntry],
    max_message_bytes: int,
    directory: Path,
) -> dict[str, Path]:
    """Download the chosen messages range by range into one GRIB2 file per variable.

    Per-variable files keep each cfgrib open small (it scans every message of the file it opens)
    and the whole download never sits in memory at once.
    """
    ordered = sorted(chosen.items(), key=lambda item: item[1].start)
    paths: dict[str, Path] = {}
    handles: dict[str, BinaryIO] = {}
    position = 0
    try:
        for start, end, count in merge_ranges(chosen.values()):
            data = reader.get_range(url, start, end, max_message_bytes * count if end is None else end - start)
            messages = split_messages(data, url, max_message_bytes)
            if len(messages) != count:
                raise SourceError(url, f"expected {count} GRIB messages from byte {start}, got {len(messages)}")
            for message in messages:
                (variable, _level), _entry = ordered[position]
                position += 1
                if variable not in handles:
                    paths[variable] = directory / f"{variable}.grib2"
                    handles[variable] = open(paths[variable], "wb")  # noqa: SIM115 - closed below
                handles[variable].write(message)
            del data, messages
    finally:
        for handle in handles.values():
            handle.close()
    return paths


def _open(path: Path, filters: dict) -> xr.Dataset:
    return xr.open_dataset(
        path, engine="cfgrib", decode_timedelta=True, backend_kwargs={"indexpath": "", "filter_by_keys": filters}
    )


def decode_messages(
    path: Path, wanted: Iterable[tuple[str, int | None]], lead_hours: int, grid: Grid, url: str
) -> dict[tuple[str, int | None], np.ndarray]:
    """Decode each wanted field with its own filter; duplicate or unsorted steps are tolerated."""
    wanted = list(wanted)
    fields: dict[tuple[str, int | None], np.ndarray] = {}
    for variable in dict.fromkeys(v for v, _ in wanted):
        spec = VARIABLES[variable]
        filters: dict[str, object] = {"typeOfLevel": spec.grib_type_of_level}
        if spec.atmospheric:
            filters["shortName"] = spec.grib_short_name
        elif spec.grib_level is not None:
            filters["level"] = spec.grib_level
        try:
            ds = _open(path, filters)
        except Exception as exc:
            raise SourceError(url, f"cfgrib could not decode {variable}: {type(exc).__name__}: {exc}") from exc
        with ds:
            if spec.grib_short_name not in ds:
                raise SourceError(
                    url, f"missing variable {variable} ({spec.grib_short_name}) after decoding (filter {filters})"
                )
            da = ds[spec.grib_short_name]
            if "step" in da.dims:  # duplicates / unsorted steps: keep one of each, then pick ours
                da = da.isel(step=np.unique(da["step"].values, return_index=True)[1])
            step = np.timedelta64(lead_hours, "h")
            if "step" in da.coords and not np.any(da["step"].values == step):
                raise SourceError(url, f"{variable}: no message at lead {lead_hours} h")
            if "step" in da.dims:
                da = da.sel(step=step)
            _check_grid(da, grid, url)
            if spec.atmospheric and "isobaricInhPa" not in da.dims:
                da = da.expand_dims("isobaricInhPa")  # a single level decodes as a scalar coordinate
            for level in [lvl for v, lvl in wanted if v == variable]:
                level_da = da
                if spec.atmospheric:
                    if level not in da["isobaricInhPa"].values:
                        raise SourceError(url, f"missing level {level} hPa of {variable} after decoding")
                    level_da = da.sel(isobaricInhPa=level)
                values = np.asarray(level_da.values, dtype=np.float32)
                if variable == "z":
                    values = values * np.float32(GRAVITY)
                fields[(variable, level)] = values
    return fields


def _check_grid(da: xr.DataArray, grid: Grid, url: str) -> None:
    try:
        found = Grid.from_coords(da["latitude"].values, da["longitude"].values)
    except ValueError as exc:
        raise SourceError(url, f"wrong grid: {exc}") from exc
    if found != grid:
        raise SourceError(url, f"wrong grid: {found.resolution_deg} degree, expected {grid.resolution_deg}")


@dataclass
class GfsLoad:
    dataset: xr.Dataset
    url: str
    bytes_read: int
    requests: int
    rejected: dict[str, str]  # field label -> range problem (quarantined as NaN)


def load_gfs(
    reader: HttpReader,
    base_url: str,
    init_time: datetime,
    lead_hours: int,
    variables: tuple[str, ...],
    levels: tuple[int, ...],
    grid: Grid,
    max_message_bytes: int,
) -> GfsLoad:
    """One GFS file's scored fields as a canonical dataset, reading only the needed byte ranges."""
    url = gfs_url(base_url, init_time, lead_hours)
    before_bytes, before_requests = reader.bytes_read, reader.requests
    entries = parse_idx(reader.get_text(url + ".idx"), url + ".idx")
    wanted = [(v, lvl) for v in variables for lvl in (levels if VARIABLES[v].atmospheric else (None,))]
    chosen = select_messages(entries, wanted, lead_hours, url)
    with tempfile.TemporaryDirectory(prefix="gfs-") as tmp:
        paths = fetch_messages(reader, url, chosen, max_message_bytes, Path(tmp))
        fields: dict[tuple[str, int | None], np.ndarray] = {}
        for variable, path in paths.items():
            mine = [(v, lvl) for v, lvl in wanted if v == variable]
            fields.update(decode_messages(path, mine, lead_hours, grid, url))
    # f000 (the analysis) is read per field without a lead; forecast fields are named with theirs.
    rejected = check_fields(fields, grid, url, lead_hours or None)
    attrs = {"source": "gfs", "source_url": url, REJECTED: rejected}
    dataset = canonical_dataset(fields, variables, levels, grid, attrs=attrs)
    return GfsLoad(dataset, url, reader.bytes_read - before_bytes, reader.requests - before_requests, rejected)
