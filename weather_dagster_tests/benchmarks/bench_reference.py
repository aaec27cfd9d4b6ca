"""Benchmark: one full-resolution (0.25 degree) GFS analysis time, all scored fields (4 surface +
5 x 13 atmospheric), read by range requests from the loopback server into the canonical dataset.

Run with ``python -m weather_dagster_tests.benchmarks.bench_reference``. The GRIB2 file is written
by a child process first so the peak RSS reported is the loader's own.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

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


if __name__ == "__main__":
    main()
