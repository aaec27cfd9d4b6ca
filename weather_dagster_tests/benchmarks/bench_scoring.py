"""Scoring benchmark: the metric kernel, one full-resolution ERA5 miner-lead and one Day1.

Prints ``name: value`` lines:
- ``kernel_ms``: all metrics of one 721 x 1440 float32 field (forecast, truth, climatology, reference)
  on one core, median of many runs;
- ``kernel_vs_xarray``: time of a straightforward xarray ``.weighted()`` implementation of the same
  formulas divided by the kernel's (a speed-up; measured in this run);
- ``kernel_vs_read_floor``: the kernel's time divided by one pass that only reads the same arrays;
- ``era5_lead_full_res_s`` / ``era5_lead_peak_rss_mb``: one miner-lead (69 fields) from local
  full-resolution Zarr stores to score rows, in a fresh child process (so its peak RSS is the
  scoring's own). The verified forecast reader (another area) has not landed: the miner's forecast
  is read from a local Zarr store of a synthetic forecast, not over loopback HTTP with hash checks;
- ``day1_full_res_s``: one miner's Day1 (5 fields) the same way.

Run: ``python -m weather_dagster_tests.benchmarks.bench_scoring`` (or ``make bench-scoring``). The
synthetic stores are generated once under ``.weather-data/bench-scoring`` (~1 GB, a minute).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numba
import numpy as np
import sqlalchemy as sa
import zarr

from weather_dagster.reference.grid import FULL_RESOLUTION, Grid
from weather_dagster.reference.synthetic.atmosphere import SyntheticAtmosphere
from weather_dagster.scoring.day1 import climatology_slot
from weather_dagster.scoring.kernel import field_metrics, latitude_weights, warm_up
from weather_dagster.settings import ScoringSettings

INIT = datetime(2026, 1, 10, tzinfo=UTC)
LEAD = 120
STORE_VERSION = "v2"
DEFAULT_DIR = Path(".weather-data/bench-scoring")


@numba.njit(cache=True, nogil=True, fastmath=True)
def _read_floor(a, b, c, d):  # pragma: no cover - compiled
    total = 0.0
    for i in range(a.shape[0]):
        s = np.float32(0.0)
        for j in range(a.shape[1]):
            s += a[i, j] + b[i, j] + c[i, j] + d[i, j]
        total += s
    return total


def _median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_kernel() -> dict[str, float]:
    from weather_dagster_tests.scoring_reference import xarray_metrics

    grid = FULL_RESOLUTION
    atmosphere = SyntheticAtmosphere(grid)
    valid = INIT + timedelta(hours=24)
    o = atmosphere.field("z", 500, valid)
    f = atmosphere.field("z", 500, valid, phase_shift_deg=2.0, noise=0.1, noise_seed="bench")
    c = atmosphere.climatology("z", 500, *climatology_slot(valid))
    r = atmosphere.gfs_forecast("z", 500, INIT, 24)
    w = latitude_weights(grid.latitudes)
    warm_up()
    _read_floor(f, o, c, r)
    kernel = _median_ms(lambda: field_metrics(f, o, w, climatology=c, reference=r), 200)
    floor = _median_ms(lambda: _read_floor(f, o, c, r), 200)
    xarray = _median_ms(lambda: xarray_metrics(f, o, c, r, grid.latitudes), 7)
    return {
        "kernel_ms": kernel,
        "kernel_vs_xarray": xarray / kernel,
        "kernel_vs_read_floor": kernel / floor,
        "xarray_ms": xarray,
        "read_floor_ms": floor,
    }


# -- local Zarr stores of synthetic fields ---------------------------------------------------------


def _name(variable: str, level: int | None) -> str:
    return variable if level is None else f"{variable}_{level}"


def _write(group: zarr.Group, variable: str, level: int | None, values: np.ndarray) -> None:
    # blosc-lz4: what a miner store is likely to use (WEATHER-NOTES: ~2.3-3.2 ms per field read)
    compressor = zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
    array = group.create_array(
        _name(variable, level), shape=values.shape, chunks=values.shape, dtype="float32", compressors=compressor
    )
    array[:] = values


def build_stores(root: Path, settings: ScoringSettings) -> Path:
    """Truth, climatology, GFS analysis/forecast and one miner's forecast, each field its own chunk."""
    from weather_dagster.reference.variables import split_level_name
    from weather_dagster.scoring.era5 import era5_fields

    stamp = root / f"ready-{STORE_VERSION}"
    if stamp.exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    atmosphere = SyntheticAtmosphere(FULL_RESOLUTION)
    valid = INIT + timedelta(hours=LEAD)
    doy, hour = climatology_slot(valid)
    groups = {k: zarr.open_group(str(root / f"{k}.zarr"), mode="w") for k in ("era5", "clim", "miner", "day1")}
    for variable, level in era5_fields(settings):
        _write(groups["era5"], variable, level, atmosphere.field(variable, level, valid))
        _write(groups["clim"], variable, level, atmosphere.climatology(variable, level, doy, hour))
        miner = atmosphere.field(
            variable, level, valid, phase_shift_deg=LEAD / 24, noise=0.05 * LEAD / 24, noise_seed=1
        )
        _write(groups["miner"], variable, level, miner)
    d1_valid = INIT + timedelta(hours=12)
    d1_doy, d1_hour = climatology_slot(d1_valid)
    for name in settings.day1_variables:
        variable, level = split_level_name(name)
        g = groups["day1"]
        _write(g, "truth_" + variable, level, atmosphere.field(variable, level, d1_valid))
        _write(g, "gfs_" + variable, level, atmosphere.gfs_forecast(variable, level, INIT, 12))
        _write(g, "clim_" + variable, level, atmosphere.climatology(variable, level, d1_doy, d1_hour))
        _write(
            g, "miner_" + variable, level, atmosphere.field(variable, level, d1_valid, phase_shift_deg=0.5, noise=0.03)
        )
    stamp.write_text("ok")
    return root


@dataclass
class ZarrSource:
    """One field per read from a local Zarr group (implements all three field interfaces)."""

    path: Path
    prefix: str = ""
    grid: Grid = FULL_RESOLUTION

    read_s: float = 0.0

    def __post_init__(self) -> None:
        self.group = zarr.open_group(str(self.path), mode="r")
        self.arrays: dict[str, zarr.Array] = {}

    def field(self, variable: str, level: int | None, *_when) -> np.ndarray:
        t0 = time.perf_counter()
        name = self.prefix + _name(variable, level)
        if name not in self.arrays:
            self.arrays[name] = self.group[name]
        values = self.arrays[name][:]
        self.read_s += time.perf_counter() - t0
        return values


def child_era5(root: Path, db_path: Path) -> dict[str, float]:
    """One miner-lead to score rows, measured in this (fresh) process."""
    from weather_dagster.db.engine import Database
    from weather_dagster.scoring.era5 import score_era5_lead
    from weather_dagster.scoring.store import ResponseKey, write_era5_lead
    from weather_dagster_tests.helpers import make_response, make_round

    settings = ScoringSettings()
    database = Database(f"sqlite:///{db_path}")
    run_id = make_round(database.engine, INIT)
    key = ResponseKey(make_response(database.engine, run_id, 1, "hk1"), run_id, 1, "hk1")
    warm_up()
    sources = [ZarrSource(root / "miner.zarr"), ZarrSource(root / "era5.zarr"), ZarrSource(root / "clim.zarr")]
    t0 = time.perf_counter()
    result = score_era5_lead(*sources, INIT, LEAD, settings)
    with database.engine.begin() as conn:
        write_era5_lead(conn, key, result, datetime.now(UTC))
    elapsed = time.perf_counter() - t0
    with database.engine.connect() as conn:
        from weather_dagster.db.schema import component_scores

        rows = conn.execute(sa.select(sa.func.count()).select_from(component_scores)).scalar_one()
    assert result.ok and rows == 69, (result.status, result.reason, rows)
    # Field-major over 4 miners: truth and climatology are read once per field for all of them.
    from weather_dagster.scoring.era5 import score_era5_lead_many

    batch = {uid: ZarrSource(root / "miner.zarr") for uid in range(4)}
    t1 = time.perf_counter()
    many = score_era5_lead_many(
        batch, ZarrSource(root / "era5.zarr"), ZarrSource(root / "clim.zarr"), INIT, LEAD, settings
    )
    per_miner = (time.perf_counter() - t1) / len(batch)
    assert all(r.ok for r in many.values())
    return {
        "era5_lead_per_miner_batch4_s": per_miner,
        "era5_lead_full_res_s": elapsed,
        "era5_lead_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "era5_lead_score": result.score,
        "era5_lead_read_s": sum(source.read_s for source in sources),
    }


def child_day1(root: Path) -> dict[str, float]:
    from weather_dagster.scoring.day1 import score_day1

    settings = ScoringSettings()
    day1 = root / "day1.zarr"
    warm_up()
    t0 = time.perf_counter()
    result = score_day1(
        ZarrSource(day1, "miner_"),
        ZarrSource(day1, "truth_"),
        ZarrSource(day1, "gfs_"),
        ZarrSource(day1, "clim_"),
        INIT,
        settings,
    )
    return {"day1_full_res_s": time.perf_counter() - t0, "day1_score": result.score}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--child", choices=["era5", "day1"])
    args = parser.parse_args(argv)
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            out = (
                child_era5(args.data_dir, Path(tmp) / "bench.db") if args.child == "era5" else child_day1(args.data_dir)
            )
        print(json.dumps(out))
        return 0
    results = bench_kernel()
    build_stores(args.data_dir, ScoringSettings())
    for child in ("era5", "day1"):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "weather_dagster_tests.benchmarks.bench_scoring",
                "--child",
                child,
                "--data-dir",
                str(args.data_dir),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        results.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    print("forecast_source: local full-resolution Zarr of a synthetic forecast (verified reader not landed yet)")
    for name in (
        "kernel_ms",
        "kernel_vs_xarray",
        "kernel_vs_read_floor",
        "era5_lead_full_res_s",
        "era5_lead_peak_rss_mb",
        "day1_full_res_s",
        "xarray_ms",
        "read_floor_ms",
        "era5_lead_read_s",
        "era5_lead_per_miner_batch4_s",
    ):
        print(f"{name}: {results[name]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
