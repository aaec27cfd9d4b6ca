"""The ReferenceData facade as scoring uses it, and the ``synthetic serve`` command."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np

from weather_dagster.reference.sources import ReferenceData
from weather_dagster.reference.synthetic.atmosphere import SyntheticAtmosphere
from weather_dagster_tests.support.fixtures_reference import REFERENCE_GRID, REFERENCE_START


def test_field_sources_read_through_the_cache(reference_settings, reference_server) -> None:
    data = ReferenceData(reference_settings)
    truth = SyntheticAtmosphere(REFERENCE_GRID)
    valid = REFERENCE_START + timedelta(hours=12)
    analysis = data.gfs_analysis()
    assert analysis.grid == REFERENCE_GRID
    first = analysis.field("msl", None, valid)
    second = analysis.field("z", 500, valid)
    assert first.dtype == np.float32 and first.shape == REFERENCE_GRID.shape
    assert np.abs(second - truth.field("z", 500, valid)).max() < 2.0
    idx = [r for r in reference_server.log.snapshot() if r.path.endswith("gfs.t12z.pgrb2.0p25.f000.idx")]
    assert len(idx) == 1  # one download for every field of the partition
    # A new facade (another process, another run) finds the partition cached: no new request.
    before = len(reference_server.log.snapshot())
    again = ReferenceData(reference_settings).gfs_analysis().field("msl", None, valid)
    np.testing.assert_array_equal(again, first)
    assert len(reference_server.log.snapshot()) == before
    forecast = data.gfs_forecast(REFERENCE_START)
    expected = truth.gfs_forecast("2t", None, REFERENCE_START, 12)
    assert np.abs(forecast.field("2t", None, 12) - expected).max() < 0.01
    assert not np.allclose(forecast.field("2t", None, 12), truth.field("2t", None, forecast.valid_time(12)))


def _start_with_sigint_ignored() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_synthetic_serve_command_serves_the_tree(tmp_path: Path) -> None:
    """It serves, and Ctrl-C stops it even when started as a background job is (SIGINT ignored)."""
    exe = Path(sys.executable).with_name("weather-dagster")
    args = ["--dir", str(tmp_path), "--grid", "6", "--days", "1", "--analysis-days", "1", "--port", "0"]
    proc = subprocess.Popen(
        [str(exe), "synthetic", "serve", *args, "--seconds", "60"],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_start_with_sigint_ignored,
    )
    try:
        lines = {}
        deadline = time.monotonic() + 60
        while "WEATHER_REFERENCE__CLIMATOLOGY_ZARR_URL" not in lines and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if "=" in line:
                key, _, value = line.strip().partition("=")
                lines[key] = value
        base = lines["WEATHER_REFERENCE__GFS_BASE_URL"]
        assert base.startswith("http://127.0.0.1:")
        idx = httpx.get(f"{base}/gfs.20250601/00/atmos/gfs.t00z.pgrb2.0p25.f000.idx", timeout=10)
        assert idx.status_code == 200 and ":HGT:500 mb:anl:" in idx.text
        ranged = httpx.get(f"{base}/gfs.20250601/00/atmos/gfs.t00z.pgrb2.0p25.f000", headers={"Range": "bytes=0-3"})
        assert ranged.status_code == 206 and ranged.content == b"GRIB"
        zmeta = httpx.get(lines["WEATHER_REFERENCE__ERA5_ZARR_URL"] + "/.zmetadata", timeout=10)
        assert zmeta.status_code == 200 and "valid_time_stop_era5t" in zmeta.text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        finally:
            proc.stdout.close()
    assert proc.returncode == 0
