"""The partition cache: identical fresh and cached data, single-flight, atomic writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import xarray as xr

from weather_dagster.reference.sources import ReferenceData
from weather_dagster.reference.synthetic.server import Fault
from weather_dagster_tests.support.fixtures_reference import REFERENCE_START

GFS_FILE = "/gfs/gfs.20250601/00/atmos/gfs.t00z.pgrb2.0p25.f000"

# Load one GFS analysis partition from N threads of a fresh process; print how many downloaded.
_WORKER = """
import json, sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from weather_dagster.reference.sources import ReferenceData
from weather_dagster.settings import load_settings
args = json.loads(sys.argv[1])
settings = load_settings(data_dir=args["data_dir"], reference=args["reference"])
when = datetime.fromisoformat(args["when"])
def attempt(_):
    return ReferenceData(settings).load_gfs_analysis(when).downloaded
with ThreadPoolExecutor(args["threads"]) as pool:
    print(json.dumps(sum(pool.map(attempt, range(args["threads"])))))
"""


def _worker_args(settings, threads: int) -> str:
    return json.dumps(
        {
            "data_dir": str(settings.data_dir),
            "reference": settings.reference.model_dump(),
            "when": REFERENCE_START.isoformat(),
            "threads": threads,
        }
    )


@pytest.mark.parametrize("kind", ["gfs_analysis", "gfs_forecast", "era5", "climatology"])
def test_fresh_and_cached_partitions_are_identical(reference_settings, kind) -> None:
    loads = {
        "gfs_analysis": lambda d: d.load_gfs_analysis(REFERENCE_START),
        "gfs_forecast": lambda d: d.load_gfs_forecast(REFERENCE_START),
        "era5": lambda d: d.load_era5(REFERENCE_START + timedelta(days=1)),
        "climatology": lambda d: d.load_climatology(153, 12),
    }
    fresh = loads[kind](ReferenceData(reference_settings))
    cached = loads[kind](ReferenceData(reference_settings))
    assert fresh.downloaded and not cached.downloaded
    xr.testing.assert_identical(fresh.dataset, cached.dataset)  # names, units, coords, orientation, attrs
    for name in fresh.dataset.data_vars:
        assert cached.dataset[name].dtype == fresh.dataset[name].dtype
        assert cached.dataset[name].dims == fresh.dataset[name].dims


def test_32_concurrent_attempts_download_once(reference_settings, reference_server) -> None:
    """16 threads in each of 2 processes: the file lock makes it one download, counted at the server."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, _worker_args(reference_settings, 16)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sum(json.loads(out.strip().splitlines()[-1]) for out in outputs) == 1
    idx_requests = [r for r in reference_server.log.snapshot() if r.path == GFS_FILE + ".idx"]
    assert len(idx_requests) == 1
    range_requests = [r for r in reference_server.log.snapshot() if r.path == GFS_FILE]
    assert len({r.range for r in range_requests}) == len(range_requests) > 0  # each range fetched once
    assert ReferenceData(reference_settings).cache.is_valid("gfs_analysis", "2025-06-01T00")


def test_concurrent_threads_in_one_process_download_once(reference_settings, reference_server) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: ReferenceData(reference_settings).load_era5(REFERENCE_START), range(8)))
    assert sum(r.downloaded for r in results) == 1
    reads = [r for r in reference_server.log.snapshot() if r.path == "/era5.zarr/2m_temperature/0.0.0"]
    assert len(reads) == 1


def test_download_killed_half_way_leaves_no_valid_cache(reference_settings, reference_server) -> None:
    reference_server.faults[GFS_FILE] = Fault(delay_s=2.0)  # the download hangs mid-way: kill it there
    proc = subprocess.Popen([sys.executable, "-c", _WORKER, _worker_args(reference_settings, 1)])
    cache = ReferenceData(reference_settings).cache
    entry = cache.path("gfs_analysis", "2025-06-01T00")
    lock = entry.with_name(entry.name + ".lock")
    deadline = time.monotonic() + 60
    while not lock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not cache.is_valid("gfs_analysis", "2025-06-01T00") and not entry.exists()
    reference_server.faults.clear()
    result = ReferenceData(reference_settings).load_gfs_analysis(REFERENCE_START)
    assert result.downloaded and cache.is_valid("gfs_analysis", "2025-06-01T00")


def test_write_interrupted_before_rename_is_not_valid_and_is_cleaned(reference_settings, monkeypatch) -> None:
    """A crash after writing the Zarr but before the rename leaves only a temp dir: never valid."""
    import weather_dagster.reference.cache as cache_module

    def crash(src, dst):
        raise KeyboardInterrupt("killed between write and rename")

    monkeypatch.setattr(cache_module.os, "rename", crash)
    data = ReferenceData(reference_settings)
    with pytest.raises(KeyboardInterrupt):
        data.load_climatology(153, 0)
    monkeypatch.undo()
    entry = data.cache.path("climatology", "153-00")
    assert not data.cache.is_valid("climatology", "153-00") and not entry.exists()
    # A leftover from a SIGKILL (temp dir with a marker) and a marker-less entry are both ignored.
    (entry.parent / (entry.name + ".tmp-dead")).mkdir()
    (entry.parent / (entry.name + ".tmp-dead") / "_complete.json").write_text("{}")
    entry.mkdir()
    assert not data.cache.is_valid("climatology", "153-00")
    result = ReferenceData(reference_settings).load_climatology(153, 0)
    assert result.downloaded and data.cache.is_valid("climatology", "153-00")
    assert not list(entry.parent.glob("*.tmp-*"))
