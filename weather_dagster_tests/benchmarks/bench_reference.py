"""Benchmark: one full-resolution (0.25 degree) GFS analysis time, all scored fields (4 surface +
5 x 13 atmospheric), read by range requests from the loopback server into the canonical dataset.

Run with ``python -m weather_dagster_tests.benchmarks.bench_reference``. The GRIB2 file is written
by a child process first so the peak RSS reported is the loader's own.

``python -m weather_dagster_tests.benchmarks.bench_reference climatology [GRID_DEG]`` (default 1.0)
measures the climatology instead, against a store chunked like WeatherBench 2's (3 hour, 3 dayofyear,
1 level, whole grid) over loopback: requests, bytes sent and bytes decoded per slot for the six slots
scoring uses in one chunk block (days 151-153 at 00 and 12 UTC), read per slot (the old way, a plain
selection) and block-wise (now). Bytes decoded are whole chunks: zarr decodes a chunk entirely.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

START = datetime(2025, 6, 1, tzinfo=UTC)
_WRITE = """
import sys
from datetime import datetime
from pathlib import Path
from weather_dagster.reference.grid import Grid
from weather_dagster.reference.synthetic.atmosphere import SyntheticAtmosphere
from weather_dagster.reference.synthetic.grib import write_synthetic_gfs
write_synthetic_gfs(Path(sys.argv[1]), SyntheticAtmosphere(Grid(0.25)), datetime.fromisoformat(sys.argv[2]), 0)
"""


def main() -> None:
    from weather_dagster.reference.gfs import load_gfs
    from weather_dagster.reference.grid import Grid
    from weather_dagster.reference.http import HttpReader, Timeouts, make_client
    from weather_dagster.reference.synthetic.server import SyntheticHttpServer
    from weather_dagster.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="bench-reference-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", _WRITE, str(root / "gfs"), START.isoformat()], check=True)
        print(f"gfs_synthetic_write_s: {time.perf_counter() - started:.2f}", flush=True)
        settings = load_settings(data_dir=root / "data")
        server = SyntheticHttpServer(root).start()
        try:
            reader = HttpReader(make_client(Timeouts.from_settings(settings.reference)))
            started = time.perf_counter()
            result = load_gfs(
                reader,
                f"{server.base_url}/gfs",
                START,
                0,
                settings.scoring.era5_variables,
                settings.scoring.pressure_levels_hpa,
                Grid(0.25),
                settings.reference.max_grib_message_bytes,
            )
            elapsed = time.perf_counter() - started
        finally:
            server.stop()
        fields = sum(result.dataset[n].size // (721 * 1440) for n in result.dataset.data_vars)
        assert fields == 69, fields
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        print(f"gfs_slice_fields: {fields}")
        print(f"gfs_slice_bytes_read: {result.bytes_read}")
        print(f"gfs_slice_requests: {result.requests}")
        print(f"gfs_slice_load_s: {elapsed:.3f}")
        print(f"gfs_slice_load_gb_per_s: {result.bytes_read / elapsed / 1e9:.4f}")
        print(f"gfs_slice_peak_rss_mb: {peak_mb:.1f}")


_WRITE_CLIMATOLOGY = """
import sys
from pathlib import Path
from weather_dagster.reference.grid import Grid
from weather_dagster.reference.synthetic.atmosphere import SyntheticAtmosphere
from weather_dagster.reference.synthetic.zarr_stores import write_climatology_zarr
grid = Grid(float(sys.argv[2]))
write_climatology_zarr(Path(sys.argv[1]), SyntheticAtmosphere(grid), (151, 152, 153), real_chunks=True)
"""
SLOTS = [(day, hour) for hour in (0, 12) for day in (151, 152, 153)]


def climatology(grid_deg: float) -> None:
    import xarray as xr

    from weather_dagster.reference.grid import Grid
    from weather_dagster.reference.sources import ReferenceData
    from weather_dagster.reference.synthetic.server import SyntheticHttpServer
    from weather_dagster.reference.variables import VARIABLES
    from weather_dagster.settings import load_settings

    grid = Grid(grid_deg)
    names = {v.era5_name for v in VARIABLES.values()}
    with tempfile.TemporaryDirectory(prefix="bench-climatology-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", _WRITE_CLIMATOLOGY, str(root / "climatology.zarr"), str(grid_deg)], check=True
        )
        print(f"climatology_synthetic_write_s: {time.perf_counter() - started:.2f}", flush=True)
        server = SyntheticHttpServer(root).start()
        url = f"{server.base_url}/climatology.zarr"

        def chunk_log() -> tuple[int, int]:
            reads = [r for r in server.log.snapshot() if r.path.split("/")[2] in names and r.path[-1].isdigit()]
            server.log.clear()
            return len(reads), sum(r.bytes_sent for r in reads)

        try:
            ds = xr.open_zarr(url, zarr_format=2, consolidated=True, chunks=None)
            chunk_bytes = {n: int(np.prod(ds[n].encoding["chunks"])) * ds[n].dtype.itemsize for n in names}
            chunk_log()
            started = time.perf_counter()
            decoded = 0
            for day, hour in SLOTS:  # before: one plain selection per variable and slot
                for name in names:
                    da = ds[name].sel(dayofyear=day, hour=hour).load()
                    decoded += chunk_bytes[name] * (da.sizes.get("level", 1))
            before_s = time.perf_counter() - started
            before_requests, before_sent = chunk_log()
            settings = load_settings(
                data_dir=root / "data",
                reference={"climatology_zarr_url": url, "grid_resolution_deg": grid_deg},
            )
            data = ReferenceData(settings)
            started = time.perf_counter()
            after_decoded = sum(data.load_climatology(d, h).info["chunk_bytes_decoded"] for d, h in SLOTS)
            after_s = time.perf_counter() - started
            after_requests, after_sent = chunk_log()
        finally:
            server.stop()
        slice_bytes = (4 + 5 * 13) * grid.shape[0] * grid.shape[1] * 4
        n = len(SLOTS)
        print(f"climatology_grid_deg: {grid_deg}")
        print(f"climatology_slice_bytes_kept: {slice_bytes}")
        for label, requests, sent, dec, secs in (
            ("before", before_requests, before_sent, decoded, before_s),
            ("after", after_requests, after_sent, after_decoded, after_s),
        ):
            print(f"climatology_{label}_requests_per_slot: {requests / n:.1f}")
            print(f"climatology_{label}_bytes_sent_per_slot: {sent / n:.0f}")
            print(f"climatology_{label}_bytes_decoded_per_slot: {dec / n:.0f} ({dec / n / slice_bytes:.2f} x kept)")
            print(f"climatology_{label}_s_per_slot: {secs / n:.3f}")  # after: includes writing the cache entries


if __name__ == "__main__":
    if sys.argv[1:2] == ["climatology"]:
        climatology(float(sys.argv[2]) if len(sys.argv) > 2 else 1.0)
    else:
        main()
