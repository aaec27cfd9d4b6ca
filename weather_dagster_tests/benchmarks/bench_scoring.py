"""Scoring benchmark: the metric kernel, one full-resolution ERA5 miner-lead and one Day1.

Prints ``name: value`` lines:
- ``kernel_ms``: all metrics of one 721 x 1440 float32 field (forecast, truth, climatology, reference)
  on one core, median of many runs;
- ``kernel_vs_xarray``: time of a straightforward xarray ``.weighted()`` implementation of the same
  formulas divided by the kernel's (a speed-up; measured in this run);
- ``kernel_vs_read_floor``: the kernel's time divided by one pass that only reads the same arrays;
- ``era5_lead_full_res_s`` / ``era5_lead_peak_rss_mb``: one 0.25 degree miner-lead (69 fields) end to
  end, as issue 5 asks: ``run_era5`` with ``LiveScoringInputs`` in a fresh child process -- open the
  frozen forecast of a loopback demo miner (kerchunk, fresh token), every key read hash-checked
  against the frozen manifest, truth (ERA5, climatology) from the synthetic loopback server through
  ``ReferenceData`` and its partition cache, score rows and step log written to SQLite. Truth cache
  warm (the steady state: reference assets fill it once per day for all miners); ``era5_cold_truth_s``
  is the same call with an empty cache (the download happens inside). Peak RSS is the child's own
  ``VmHWM``; ``*_cpu_s`` is the child's CPU time (robust to other load on the shared machine);
- ``day1_full_res_s``: one miner's Day1 the same way (GFS analysis / f012 GRIB2 over loopback).
- ``era5_batch_per_miner_lead_s`` (``_cpu_s``, ``era5_batch_peak_rss_mb``): 16 miner-leads scored
  field-major as ``score_batch`` does (each truth and climatology field read once for the batch,
  the miners of a field side by side on ``scoring_threads`` threads), per miner; the one demo miner
  opened 16 times (16 verified stores), truth cache warm. ``era5_batch_miner_server_cpu_s`` is the
  demo miner process's CPU per miner-lead meanwhile: it runs on the same cores (a deployed miner
  does not).
- ``profile_*``: what the scoring profile costs, side by side in this run: one in-memory 0.25 degree
  miner-lead (69 fields, truth and climatology in memory, so only scoring is timed) under
  ``reference`` and ``corrected``, and under ``reference`` for a miner whose grid lacks the south-pole
  row (720 rows: every field interpolated, NaN row salvaged: the reference's slowest common path).

The demo miner runs in its own process with ``forecast_steps`` 4 (leads 6..24 h; the manifest lists
every file). Data is built once under ``.weather-data/bench-scoring-e2e`` (~1.7 GB, a few minutes);
the round, databases and truth caches live in a temporary directory removed at the end.

Run: ``python -m weather_dagster_tests.benchmarks.bench_scoring [--profile] [--skip-kernel]`` (or
``make bench-scoring``).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numba
import numpy as np

from weather_dagster.reference.grid import FULL_RESOLUTION, Grid
from weather_dagster.reference.synthetic.atmosphere import SyntheticAtmosphere
from weather_dagster.scoring.day1 import climatology_slot
from weather_dagster.scoring.kernel import field_metrics, latitude_weights, warm_up

INIT = datetime(2026, 1, 10, tzinfo=UTC)
LEAD = 120
STORE_VERSION = "v2"
DEFAULT_DIR = Path(".weather-data/bench-scoring-e2e")


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
    from weather_dagster_tests.support.scoring_reference import xarray_metrics

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


def bench_profiles() -> dict[str, float]:
    """Scoring time of one in-memory full-resolution miner-lead per profile (median of 3)."""
    from weather_dagster.reference.grid import CoordinateGrid
    from weather_dagster.scoring.era5 import score_era5_lead_many
    from weather_dagster.settings import ScoringSettings

    grid = FULL_RESOLUTION
    atmosphere = SyntheticAtmosphere(grid)
    valid = INIT + timedelta(hours=LEAD)
    doy, hour = climatology_slot(valid)
    settings = ScoringSettings()
    fields = [(n, None) for n in settings.surface_variables] + [
        (n, lvl) for n in settings.atmospheric_variables for lvl in settings.pressure_levels_hpa
    ]
    truth = {key: atmosphere.field(*key, valid) for key in fields}
    clim = {key: atmosphere.climatology(*key, doy, hour) for key in fields}
    forecast = {key: (truth[key] * 1.001 + 0.01).astype(np.float32) for key in fields}

    class Source:
        def __init__(self, data, source_grid):
            self.data, self.grid = data, source_grid

        def field(self, name, level, *_):
            return self.data[(name, level)]

    cropped = CoordinateGrid(grid.latitudes[:-1].astype(np.float32), grid.longitudes)
    miners = {
        "canonical": Source(forecast, grid),
        "cropped": Source({k: v[:-1] for k, v in forecast.items()}, cropped),
    }
    truth_source, clim_source = Source(truth, grid), Source(clim, grid)
    out = {}
    for label, profile, miner in (
        ("reference", "reference", "canonical"),
        ("corrected", "corrected", "canonical"),
        ("reference_720_rows", "reference", "cropped"),
    ):
        s = settings.model_copy(update={"profile": profile})
        run = lambda s=s, m=miner: score_era5_lead_many({0: miners[m]}, truth_source, clim_source, INIT, LEAD, s)  # noqa: E731
        run()
        out[f"profile_{label}_lead_s"] = _median_ms(run, 3) / 1e3
    out["profile_reference_vs_corrected"] = out["profile_reference_lead_s"] / out["profile_corrected_lead_s"]
    return out


def bench_end_to_end(data_dir: Path, grid: Grid, profile: bool) -> dict[str, float]:
    """Build the loopback truth and miner once, freeze one round, then time scoring in fresh children."""
    from weather_dagster.reference.synthetic.server import serve
    from weather_dagster_tests.benchmarks import scoring_e2e as e2e

    data_dir.mkdir(parents=True, exist_ok=True)
    tree = e2e.build_truth(data_dir / "truth", grid)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        work = Path(tmp)
        server = serve(tree)
        fleet = e2e.start_fleet(data_dir / "miner-files", work / "metagraph.json", grid)
        try:
            reference = e2e.reference_overrides(server.base_url, grid)

            def overrides(db: str, ref_cache: str) -> dict:
                return e2e.settings_overrides(work, work / "metagraph.json", reference, work / db, work / ref_cache)

            run_id = e2e.freeze_round(overrides("ready.db", "validator"))
            for kind, template in (("day1", "ready.db"), ("era5", "day1.db")):
                # cold: the truth partitions are downloaded into an empty cache inside the timed call
                shutil.copy(work / template, work / f"{kind}-cold.db")
                cold = e2e.run_child(kind, overrides(f"{kind}-cold.db", f"cache-{kind}"), run_id)
                if kind == "day1":
                    shutil.copy(work / "day1-cold.db", work / "day1.db")  # Day1 scored: ERA5 may start
                # warm: the same call with the truth already in the partition cache (the steady state)
                shutil.copy(work / template, work / f"{kind}-warm.db")
                warm = e2e.run_child(kind, overrides(f"{kind}-warm.db", f"cache-{kind}"), run_id, profile)
                results[f"{kind}_cold_truth_s"] = cold["seconds"]
                results[f"{kind}_warm_truth_s"] = warm["seconds"]
                results[f"{kind}_cpu_s"] = warm["cpu_s"]
                results[f"{kind}_peak_rss_mb"] = warm["peak_rss_mb"]
                results[f"{kind}_cold_peak_rss_mb"] = cold["peak_rss_mb"]
                results[f"{kind}_rss_before_mb"] = warm["rss_before_mb"]
                results[f"{kind}_rows"] = warm["rows"]
                print(f"{kind}_outcome: {warm['detail']}")
            # field-major batch on the warm truth cache of the ERA5 runs (a copy of the Day1-scored round)
            shutil.copy(work / "day1.db", work / "batch.db")
            server_cpu = e2e.process_cpu_s(fleet.pid)
            batch = e2e.run_child("era5_batch", overrides("batch.db", "cache-era5"), run_id, profile)
            # The one demo miner serves all 16 stores on this machine, on the same cores as scoring.
            results["era5_batch_miner_server_cpu_s"] = (e2e.process_cpu_s(fleet.pid) - server_cpu) / e2e.BATCH_MINERS
            results["era5_batch_per_miner_lead_s"] = batch["seconds"]
            results["era5_batch_per_miner_cpu_s"] = batch["cpu_s"]
            results["era5_batch_peak_rss_mb"] = batch["peak_rss_mb"]
        finally:
            e2e.stop_fleet(fleet)
            server.stop()
    results["era5_lead_full_res_s"] = results["era5_warm_truth_s"]
    results["era5_lead_peak_rss_mb"] = results["era5_peak_rss_mb"]
    results["day1_full_res_s"] = results["day1_warm_truth_s"]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--grid-deg", type=float, default=FULL_RESOLUTION.resolution_deg)
    parser.add_argument("--profile", action="store_true", help="cProfile the warm runs (to stderr)")
    parser.add_argument("--skip-kernel", action="store_true")
    parser.add_argument("--receipts", action="store_true", help="only score receipts on vs off (bench_receipts)")
    args = parser.parse_args(argv)
    if args.receipts:
        from weather_dagster_tests.benchmarks.bench_receipts import main as bench_receipts

        return bench_receipts()
    results = {} if args.skip_kernel else bench_kernel()
    results.update(bench_profiles())
    results.update(bench_end_to_end(args.data_dir, Grid(args.grid_deg), args.profile))
    print(f"grid_deg: {args.grid_deg}")
    print("forecast_source: loopback demo miner (forecast_steps 4), verified reader, every key hash-checked")
    print("truth_source: synthetic loopback server through ReferenceData (GFS GRIB2, ERA5 + climatology Zarr)")
    names = ["kernel_ms", "kernel_vs_xarray", "kernel_vs_read_floor"] * (not args.skip_kernel)
    names += ["era5_lead_full_res_s", "era5_lead_peak_rss_mb", "day1_full_res_s"]
    names += ["era5_batch_per_miner_lead_s", "era5_batch_per_miner_cpu_s", "era5_batch_peak_rss_mb"]
    names += ["era5_batch_miner_server_cpu_s"]
    names += ["profile_reference_lead_s", "profile_corrected_lead_s", "profile_reference_vs_corrected"]
    names += ["profile_reference_720_rows_lead_s"]
    names += ["xarray_ms", "read_floor_ms"] * (not args.skip_kernel)
    names += [
        "era5_cpu_s",
        "day1_cpu_s",
        "era5_cold_truth_s",
        "era5_cold_peak_rss_mb",
        "era5_rss_before_mb",
        "era5_rows",
        "day1_cold_truth_s",
        "day1_peak_rss_mb",
        "day1_cold_peak_rss_mb",
        "day1_rows",
    ]
    for name in names:
        print(f"{name}: {results[name]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
