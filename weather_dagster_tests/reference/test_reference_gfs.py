"""GFS: GRIB2 written by eccodes, fetched by HTTP range requests from loopback, decoded by cfgrib."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from weather_dagster.core.errors import SourceError
from weather_dagster.reference.gfs import decode_messages, gfs_url, parse_idx
from weather_dagster.reference.grid import Grid
from weather_dagster.reference.sources import ReferenceData
from weather_dagster.reference.synthetic.atmosphere import SyntheticAtmosphere
from weather_dagster.reference.synthetic.grib import Message, gfs_path, write_grib
from weather_dagster.reference.synthetic.server import Fault
from weather_dagster.reference.variables import GRAVITY, PRESSURE_LEVELS_HPA, VARIABLES
from weather_dagster_tests.support.fixtures_reference import REFERENCE_START
from weather_dagster_tests.support.reference_helpers import serving, settings_for, write_custom_gfs

GRID = Grid(2.0)
INIT = REFERENCE_START


def _wanted_spans(path) -> list[tuple[int, int]]:
    """Byte spans [start, end) of the messages the validator needs, from the file's own .idx."""
    entries = parse_idx(Path(str(path) + ".idx").read_text(), "idx")
    size = path.stat().st_size
    wanted_levels = {f"{p} mb" for p in PRESSURE_LEVELS_HPA}
    surface = {("TMP", "2 m above ground"), ("UGRD", "10 m above ground"), ("VGRD", "10 m above ground")}
    spans = []
    for e in entries:
        scored_pl = e.variable in {"HGT", "TMP", "UGRD", "VGRD", "SPFH"} and e.level in wanted_levels
        if scored_pl or (e.variable, e.level) in surface or e.variable == "PRMSL":
            spans.append((e.start, e.end or size))
    return spans


def test_gfs_url_follows_noaa_layout() -> None:
    url = gfs_url("https://noaa-gfs-bdp-pds.s3.amazonaws.com/", datetime(2025, 6, 1, 6, tzinfo=UTC), 12)
    assert url == "https://noaa-gfs-bdp-pds.s3.amazonaws.com/gfs.20250601/06/atmos/gfs.t06z.pgrb2.0p25.f012"


def test_parse_idx_gives_zero_based_spans_and_open_last_message() -> None:
    text = (
        "1:0:d=2025060100:HGT:500 mb:anl:\n2:120:d=2025060100:TMP:500 mb:anl:\n"
        "3:300:d=2025060100:PRMSL:mean sea level:anl:\n"
    )
    entries = parse_idx(text, "u")
    assert [(e.start, e.end) for e in entries] == [(0, 120), (120, 300), (300, None)]
    assert entries[1].variable == "TMP" and entries[1].level == "500 mb" and entries[1].ftime == "anl"
    with pytest.raises(SourceError, match=r"malformed \.idx line 1"):
        parse_idx("garbage\n", "u")


def test_range_reads_fetch_only_the_needed_messages(reference_settings, reference_server, reference_tree) -> None:
    data = ReferenceData(reference_settings)
    result = data.load_gfs_analysis(INIT)
    path = gfs_path(reference_tree.root / "gfs", INIT, 0)
    log = [r for r in reference_server.log.matching(path.name) if not r.path.endswith(".idx")]
    assert log and all(r.status == 206 and r.range for r in log)
    requested = []
    for r in log:
        start, end = re.match(r"bytes=(\d+)-(\d*)", r.range).groups()
        requested.append((int(start), int(end) + 1 if end else path.stat().st_size))
        assert r.bytes_sent == requested[-1][1] - requested[-1][0]
    wanted = _wanted_spans(path)

    def union(spans):
        merged: list[list[int]] = []
        for a, z in sorted(spans):
            if merged and merged[-1][1] >= a:
                merged[-1][1] = max(merged[-1][1], z)
            else:
                merged.append([a, z])
        return merged

    assert union(requested) == union(wanted)  # everything needed, nothing else
    assert sum(z - a for a, z in requested) == sum(z - a for a, z in wanted) < path.stat().st_size
    idx_size = Path(str(path) + ".idx").stat().st_size
    assert result.info["bytes_read"] == sum(z - a for a, z in wanted) + idx_size


def test_decoded_analysis_is_canonical_and_matches_the_atmosphere(reference_settings) -> None:
    ds = ReferenceData(reference_settings).load_gfs_analysis(INIT).dataset
    truth = SyntheticAtmosphere(GRID)
    assert set(ds.data_vars) == set(VARIABLES)
    assert {name: ds[name].attrs["units"] for name in ds.data_vars} == {n: v.units for n, v in VARIABLES.items()}
    assert ds["lat"].values[0] == 90.0 and ds["lat"].values[-1] == -90.0
    assert ds["lon"].values[0] == 0.0 and ds["lon"].values[-1] == 358.0
    assert ds["z"].dims == ("pressure_level", "lat", "lon") and ds["2t"].dims == ("lat", "lon")
    assert list(ds["pressure_level"].values) == list(PRESSURE_LEVELS_HPA)
    for name in ds.data_vars:
        assert ds[name].dtype == np.float32
    for name, level in (("2t", None), ("10u", None), ("10v", None), ("msl", None), ("z", 500), ("q", 850), ("u", 250)):
        expected = truth.field(name, level, INIT)
        got = ds[name].values if level is None else ds[name].sel(pressure_level=level).values
        span = float(expected.max() - expected.min())
        assert np.abs(got - expected).max() <= span * 2e-4 + 1e-9, name  # 16-bit packing error only
    # z is geopotential: gh (gpm) x 9.80665, not x 9.81 (18 m2 s-2 off at 500 hPa).
    z500 = ds["z"].sel(pressure_level=500).values
    assert abs(float(z500.mean()) - float(truth.field("z", 500, INIT).mean())) < 1.0
    assert abs(float(z500.mean()) / GRAVITY * 9.81 - float(z500.mean())) > 10.0


def test_unfiltered_open_drops_10m_wind_but_the_loader_keeps_it(tmp_path) -> None:
    """Mixed level types (2 m, 10 m, mean sea level, isobaric): cfgrib without a filter quietly
    drops the 10 m wind; the loader decodes each variable with its own ``typeOfLevel`` filter."""
    truth = SyntheticAtmosphere(GRID)
    keep = {("TMP", 2), ("UGRD", 10), ("VGRD", 10), ("PRMSL", 0), ("HGT", 500), ("TMP", 500), ("TMP", 850)}
    path = write_custom_gfs(tmp_path, GRID, INIT, edit=lambda ms: [m for m in ms if (m.idx_name, m.level) in keep])
    naive = xr.open_dataset(path, engine="cfgrib", backend_kwargs={"indexpath": ""})
    assert "u10" not in naive.data_vars and "v10" not in naive.data_vars  # the silent failure of SPEC 7
    naive.close()
    wanted = [("2t", None), ("10u", None), ("10v", None), ("msl", None), ("z", 500), ("t", 500), ("t", 850)]
    fields = decode_messages(path, wanted, 0, GRID, "file")
    assert set(fields) == set(wanted)
    for name, level in wanted:
        expected = truth.field(name, level, INIT)
        span = float(expected.max() - expected.min())
        assert np.abs(fields[(name, level)] - expected).max() <= span * 2e-4, name


def test_duplicated_and_unsorted_steps_decode_to_the_right_fields(tmp_path) -> None:
    """A forecast file with steps 12, 6, 12, 0 (duplicates, unsorted): lead 12 must be the f012 field."""
    truth = SyntheticAtmosphere(GRID)

    def shuffled(messages: list[Message]) -> list[Message]:
        out = []
        for m in messages:
            decoy = replace(m, values=m.values + 1.0)
            out += [m, replace(decoy, step_hours=6), m, replace(decoy, step_hours=0)]
        return out

    def values(name: str, level: int | None) -> np.ndarray:
        return truth.gfs_forecast(name, level, INIT, 12)

    from weather_dagster.reference.synthetic.grib import gfs_messages

    path = gfs_path(tmp_path / "gfs", INIT, 12)
    write_grib(path, shuffled(gfs_messages(values, GRID, 12)), GRID, INIT)
    with serving(tmp_path) as server:
        source = ReferenceData(settings_for(server, tmp_path / "data", GRID)).gfs_forecast(INIT)
        for name, level in (("2t", None), ("msl", None), ("z", 500), ("t", 850)):
            expected = truth.gfs_forecast(name, level, INIT, 12)
            span = float(expected.max() - expected.min())
            assert np.abs(source.field(name, level, 12) - expected).max() <= span * 2e-4, name


def test_server_ignoring_range_is_refused(reference_settings, reference_server) -> None:
    reference_server.faults["/gfs/"] = Fault(ignore_range=True)
    with pytest.raises(SourceError, match=r"ignored the Range header.*HTTP 200") as info:
        ReferenceData(reference_settings).load_gfs_analysis(INIT)
    assert "gfs.t00z.pgrb2.0p25.f000" in info.value.url
    assert not ReferenceData(reference_settings).cache.is_valid("gfs_analysis", "2025-06-01T00")


@pytest.mark.parametrize(
    ("fault", "match"),
    [
        (None, r"HTTP 404"),
        (Fault(status=500), r"HTTP 500"),
        (Fault(delay_s=1.5), r"timed out"),
        (Fault(truncate_after=1000), r"truncated"),
    ],
    ids=["404", "500", "timeout", "truncated-response"],
)
def test_http_failures_name_the_url_and_problem(reference_settings, reference_server, fault, match) -> None:
    when = INIT if fault else datetime(2024, 1, 1, tzinfo=UTC)  # no such cycle -> 404
    if fault:
        reference_server.faults["/gfs/gfs.20250601/00/atmos/gfs.t00z.pgrb2.0p25.f000"] = fault
    settings = reference_settings.model_copy(
        update={"reference": reference_settings.reference.model_copy(update={"http_timeout_s": 0.5})}
    )
    with pytest.raises(SourceError, match=match) as info:
        ReferenceData(settings).load_gfs_analysis(when)
    assert info.value.url.startswith(reference_server.base_url + "/gfs/")
    assert f"url: {info.value.url}" in str(info.value)


def _truncate_file(tmp_path):
    path = write_custom_gfs(tmp_path, GRID, INIT)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 5000])  # the last messages are cut short


def _nan_in_2t(messages):
    out = []
    for m in messages:
        if m.idx_name == "TMP" and m.type_of_level == "heightAboveGround":
            values = m.values.copy()
            values[10, 10:20] = np.nan
            m = replace(m, values=values)
        out.append(m)
    return out


@pytest.mark.parametrize(
    ("make", "match"),
    [
        ("truncated", r"truncated GRIB message|expected \d+ GRIB messages"),
        ("wrong-grid", r"wrong grid"),
        ("missing-level", r"missing variable or level in the .idx: HGT:500 mb:anl"),
        ("missing-variable", r"missing variable or level in the .idx: SPFH"),
        ("nan", r"NaN or infinite values in 2t"),
    ],
)
def test_bad_files_end_in_clear_errors(tmp_path, make, match) -> None:
    if make == "truncated":
        _truncate_file(tmp_path)
    elif make == "wrong-grid":
        write_custom_gfs(tmp_path, Grid(3.0), INIT)
    elif make == "missing-level":
        write_custom_gfs(tmp_path, GRID, INIT, edit=lambda ms: [m for m in ms if (m.idx_name, m.level) != ("HGT", 500)])
    elif make == "missing-variable":
        write_custom_gfs(tmp_path, GRID, INIT, edit=lambda ms: [m for m in ms if m.idx_name != "SPFH"])
    else:
        write_custom_gfs(tmp_path, GRID, INIT, edit=_nan_in_2t)
    with serving(tmp_path) as server:
        data = ReferenceData(settings_for(server, tmp_path / "data", GRID))
        with pytest.raises(SourceError, match=match) as info:
            data.load_gfs_analysis(INIT)
        assert "gfs.t00z.pgrb2.0p25.f000" in info.value.url
        assert not data.cache.is_valid("gfs_analysis", "2025-06-01T00")
