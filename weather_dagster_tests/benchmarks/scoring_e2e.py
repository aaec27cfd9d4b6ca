"""End-to-end plumbing of the scoring benchmark (issue 5): loopback truth, a loopback demo miner, a frozen round.

Built once, outside any timed region:
- a full-resolution synthetic reference tree (GFS GRIB2 + ERA5 / climatology Zarr) holding only the
  valid times one Day1 and one ERA5 lead need, served by the synthetic loopback HTTP server;
- one GOOD demo miner (``forecast_steps`` 4: leads 6..24 h) in its own process, its chunk files
  generated once into a disk cache, so serving a 4 MB chunk is a file read, not a computation;
- a round driven through the real lifecycle (handshake, poll, manifest verification, freeze) into a
  SQLite template database.

Measured in a fresh child process per run (``python -m ...scoring_e2e child ...``): the service call
scoring would make (``run_day1`` / ``run_era5``) with ``LiveScoringInputs`` -- open (kerchunk with a
fresh token), verify every key against the frozen manifest, read, score, write the rows and step log.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from weather_dagster.reference.grid import FULL_RESOLUTION, Grid

INIT = datetime(2026, 1, 10, tzinfo=UTC)
LEAD = 24
STEPS = 4  # leads 6, 12, 18, 24 h: the manifest still lists every file of the store
DAY1_LEAD = 12
DATA_VERSION = "e2e-v1"
FLEET_SEED = "bench-scoring"
BATCH_MINERS = 16  # era5_batch_per_miner_lead_s: miners scored field-major in one batch


def _slots() -> list[tuple[int, int]]:
    from weather_dagster.scoring.day1 import climatology_slot

    return [climatology_slot(INIT + timedelta(hours=h)) for h in (DAY1_LEAD, LEAD)]


def build_truth(root: Path, grid: Grid = FULL_RESOLUTION) -> Path:
    """The reference tree for one Day1 (GFS analysis + f012, climatology) and one ERA5 lead."""
    from weather_dagster.reference.synthetic.atmosphere import SyntheticAtmosphere
    from weather_dagster.reference.synthetic.grib import write_synthetic_gfs
    from weather_dagster.reference.synthetic.tree import CLIMATOLOGY_STORE, ERA5_STORE, GFS_DIR
    from weather_dagster.reference.synthetic.zarr_stores import write_climatology_zarr, write_era5_zarr

    stamp = root / f"ready-{DATA_VERSION}-{grid.resolution_deg:g}"
    if stamp.exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    atmosphere = SyntheticAtmosphere(grid)
    write_synthetic_gfs(root / GFS_DIR, atmosphere, INIT + timedelta(hours=DAY1_LEAD), 0)
    write_synthetic_gfs(root / GFS_DIR, atmosphere, INIT, DAY1_LEAD)
    write_era5_zarr(root / ERA5_STORE, atmosphere, [INIT + timedelta(hours=LEAD)])
    slots = _slots()
    write_climatology_zarr(
        root / CLIMATOLOGY_STORE, atmosphere, sorted({d for d, _ in slots}), sorted({h for _, h in slots})
    )
    stamp.write_text("ok")
    return root


def reference_overrides(base_url: str, grid: Grid) -> dict:
    from weather_dagster.reference.synthetic.tree import CLIMATOLOGY_STORE, ERA5_STORE, GFS_DIR

    base = base_url.rstrip("/")
    return {
        "gfs_base_url": f"{base}/{GFS_DIR}",
        "era5_zarr_url": f"{base}/{ERA5_STORE}",
        "climatology_zarr_url": f"{base}/{CLIMATOLOGY_STORE}",
        "grid_resolution_deg": grid.resolution_deg,
    }


def settings_overrides(work: Path, metagraph: Path, reference: dict, db_path: Path, ref_cache: Path) -> dict:
    """Everything but loopback allowances and short polls is the production default."""
    from weather_dagster.miners.keys import derived_seed

    return {
        "data_dir": str(ref_cache),
        "database_url": f"sqlite:///{db_path}",
        "miners": {
            "allow_private_hosts": ["127.0.0.1"],
            "hotkey_seed": derived_seed("bench", "validator"),
            "metagraph_file": str(metagraph),
            "forecast_steps": STEPS,
            "manifest_freeze_window_s": 3600.0,
        },
        "retry": {"poll_first_delay_s": 0.2, "poll_interval_s": 0.2, "kerchunk_timeout_s": 120.0},
        "reference": reference,
        "scoring": {"era5_lead_hours": [LEAD], "day1_lead_hours": [DAY1_LEAD]},
    }


# -- the miner, in its own process -----------------------------------------------------------------


def serve_fleet(cache_dir: Path, metagraph: Path, grid_deg: float) -> int:
    """Pre-generate the store's chunks into the disk cache, then serve until stdin closes."""
    from weather_dagster.miners.demo.fleet import DemoFleet, FleetConfig
    from weather_dagster.miners.demo.forecast import ForecastStore

    config = FleetConfig(
        count=1, grid_deg=grid_deg, steps=STEPS, ready_after_s=0.0, fleet_seed=FLEET_SEED, file_cache_dir=cache_dir
    )
    ForecastStore(Grid(grid_deg), INIT, 0, steps=STEPS, file_cache_dir=cache_dir).file_hashes()
    fleet = DemoFleet(config).start()
    try:
        fleet.write_metagraph(metagraph)
        sys.stdin.read()  # the parent closes our stdin (or dies): stop
    finally:
        fleet.stop()
    return 0


def start_fleet(cache_dir: Path, metagraph: Path, grid: Grid) -> subprocess.Popen:
    command = [sys.executable, "-m", __name__, "fleet", str(cache_dir), str(metagraph), str(grid.resolution_deg)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE)
    deadline = time.monotonic() + 900
    while not metagraph.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_fleet(process)
            raise RuntimeError("the demo miner did not start")
        time.sleep(0.2)
    return process


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, with reaped children) of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def stop_fleet(process: subprocess.Popen) -> None:
    if process.stdin:
        process.stdin.close()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def freeze_round(overrides: dict) -> int:
    """One round through the real lifecycle until the miner's forecast is frozen; returns its run id."""
    from weather_dagster.core.retry import RetryPolicy
    from weather_dagster.db.engine import Database
    from weather_dagster.db.steps import StepLog
    from weather_dagster.miners.keys import validator_keypair
    from weather_dagster.miners.lifecycle import create_round, run_until_settled, seed_miners
    from weather_dagster.miners.metagraph import metagraph_from_settings
    from weather_dagster.settings import load_settings

    settings = load_settings(**overrides)
    database = Database(settings.resolved_database_url)
    engine = database.engine
    run_id = create_round(engine, INIT, settings)
    seed_miners(
        engine,
        StepLog(engine, RetryPolicy.from_settings(settings)),
        run_id,
        metagraph_from_settings(settings).snapshot(),
    )
    settled = asyncio.run(run_until_settled(settings, engine, run_id, validator_keypair(settings), max_wait_s=600))
    status = _status(engine, run_id)
    database.dispose()
    if not settled or status != "forecast_ready":
        raise RuntimeError(f"the round did not freeze the forecast (status {status})")
    return run_id


def _status(engine, run_id: int) -> str:
    import sqlalchemy as sa

    from weather_dagster.db.schema import miner_responses

    with engine.connect() as conn:
        return conn.execute(sa.select(miner_responses.c.status).where(miner_responses.c.run_id == run_id)).scalar_one()


# -- one measured scoring call, in a fresh process ---------------------------------------------------


def peak_rss_mb() -> float:
    """This process's own peak RSS (``VmHWM``). Not ``ru_maxrss``: Linux carries the parent's peak
    across fork + exec into it, so a child of a 2 GB parent would report 2 GB whatever it does."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(kind: str, overrides: dict, run_id: int, profile: bool) -> dict:
    import sqlalchemy as sa
    import xarray.backends.zarr  # noqa: F401

    # A scoring worker imports these once for hundreds of miners: not part of one miner-lead's cost.
    import weather_dagster.miners.opening  # noqa: F401
    from weather_dagster.core.retry import RetryPolicy
    from weather_dagster.db.engine import Database
    from weather_dagster.db.schema import component_scores
    from weather_dagster.db.steps import StepLog
    from weather_dagster.reference.sources import ReferenceData
    from weather_dagster.scoring.kernel import warm_up
    from weather_dagster.scoring.live_inputs import LiveScoringInputs
    from weather_dagster.scoring.service import run_day1, run_era5
    from weather_dagster.settings import load_settings

    settings = load_settings(**overrides)
    database = Database(settings.resolved_database_url)
    engine = database.engine
    steps = StepLog(engine, RetryPolicy.from_settings(settings))
    reference = ReferenceData(settings)
    inputs = LiveScoringInputs(settings, database, reference)
    warm_up()
    with engine.connect() as conn:  # migrations and the connection pool are set up before timing
        conn.execute(sa.select(sa.func.count()).select_from(component_scores)).scalar_one()
    rss_before = peak_rss_mb()
    profiler = _profiler() if profile else None
    now = INIT + timedelta(days=30)  # every truth is due
    t0, cpu0 = time.perf_counter(), time.process_time()
    if profiler:
        profiler.start()
    try:
        if kind == "era5_batch":
            outcome = _era5_batch(engine, settings, inputs, run_id, now)
        elif kind == "day1":
            outcome = run_day1(engine, steps, settings, inputs, run_id, 0, now=now)
        else:
            outcome = run_era5(engine, steps, settings, inputs, run_id, 0, now=now)
    finally:
        inputs.release()
    if profiler:
        profiler.stop()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    score_type = "day1" if kind == "day1" else "era5"
    if kind == "era5_batch":
        profiler_out(profiler)
        reference.close()
        database.dispose()
        return {
            "seconds": elapsed / BATCH_MINERS,
            "cpu_s": cpu / BATCH_MINERS,
            "peak_rss_mb": peak_rss_mb(),
            "rss_before_mb": rss_before,
            "rows": outcome,
            "detail": f"{BATCH_MINERS} verified stores scored field-major",
        }
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(sa.func.count())
            .select_from(component_scores)
            .where(component_scores.c.score_type.like(f"{score_type}%"))
        ).scalar_one()
    ok = outcome.status == "scored" and (kind == "day1" or outcome.leads == {LEAD: "done"})
    if not ok or not rows:
        raise RuntimeError(f"{kind}: {outcome.status} {outcome.detail} leads={outcome.leads} rows={rows}")
    result = {
        "seconds": elapsed,
        "cpu_s": cpu,  # this process only (all its threads); robust to other load on the machine
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_mb": rss_before,
        "rows": rows,
        "detail": outcome.detail,
    }
    profiler_out(profiler)
    reference.close()
    database.dispose()
    return result


# Phases of a miner-lead, by the functions that do them; a sample goes to the first phase (in this
# order) found anywhere on its stack, so e.g. a hash inside the forecast's open counts as hashing.
PHASES = [
    ("sha256 verification", ("file_hash",)),
    ("codec decode", ("decode_chunk",)),
    ("miner HTTP transfer", ("StoreHttp.get", "_fetch", "fetch")),
    ("waiting for read-ahead", ("Future.result",)),
    ("metric kernel", ("field_metrics",)),
    ("regrid", ("to_truth_grid", "to_grid")),
    ("checks (scan, fill, salvage, ACC rules)", ("check_and_fill", "_scan", "salvage_edges", "reference_acc")),
    ("truth + climatology reads", ("field_of",)),
    ("miner field: zarr/xarray layers", ("VerifiedForecast.field",)),
    ("open forecast (kerchunk, metadata, coords)", ("open_verified_forecast",)),
    ("score + step log writes", ("write_era5_lead", "refresh_forecast_stats", "read_rollup", "StepLog")),
    ("truth partition open", ("ReferenceData._dataset",)),
]


def _profiler():
    """pyinstrument when installed (a dev tool: ``pip install pyinstrument``), else cProfile."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        profile = cProfile.Profile()
        profile.start, profile.stop = profile.enable, profile.disable
        return profile
    return Profiler(interval=0.0005)


def phase_table(profiler) -> dict[str, float]:
    """Seconds of the main thread per phase (``PHASES``), from a pyinstrument session."""
    totals: dict[str, float] = {}

    def walk(frame, stack: tuple[str, ...]) -> None:
        name = f"{frame.class_name}.{frame.function}" if frame.class_name else frame.function
        stack = (*stack, name, frame.function or "")
        own = frame.total_self_time
        if own:
            phase = next((label for label, names in PHASES if any(n in stack for n in names)), "other")
            totals[phase] = totals.get(phase, 0.0) + own
        for child in frame.children:
            if not child.is_synthetic:  # their time is in total_self_time above
                walk(child, stack)

    root = profiler.last_session.root_frame()
    if root is not None:
        walk(root, ())
    return totals


def profiler_out(profiler) -> None:
    if profiler is None:
        return
    if isinstance(profiler, cProfile.Profile):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(35)
        print(out.getvalue(), file=sys.stderr)
        return
    print(profiler.output_text(unicode=False, color=False), file=sys.stderr)
    table = phase_table(profiler)
    total = sum(table.values())
    print("phase | s | share", file=sys.stderr)
    for label, seconds in sorted(table.items(), key=lambda kv: -kv[1]):
        print(f"PHASE {label} | {seconds:.3f} | {seconds / total:.0%}", file=sys.stderr)


def _era5_batch(engine, settings, inputs, run_id: int, now) -> int:
    """``BATCH_MINERS`` miners' lead scored field-major, as ``score_batch`` does (``scoring.batch``).

    The one loopback demo miner is opened ``BATCH_MINERS`` times: each open is its own kerchunk
    request, verified store and HTTP client, every key hash-checked, so the miner-side cost is that
    of as many miners; the truth and climatology fields are read once for all of them. Every result
    is written as its miner's rows would be. Returns the rows written.
    """
    from weather_dagster.scoring.era5 import score_era5_lead_many
    from weather_dagster.scoring.fanout import scoring_threads
    from weather_dagster.scoring.service import find_response
    from weather_dagster.scoring.store import write_era5_lead

    with engine.connect() as conn:
        key, _status, init = find_response(conn, run_id, 0)
    forecasts = {i: inputs.forecast(run_id, 0, key.miner_hotkey) for i in range(BATCH_MINERS)}
    truth, climatology = inputs.truth("era5", init), inputs.climatology()
    threads = scoring_threads(settings)
    results = score_era5_lead_many(forecasts, truth, climatology, init, LEAD, settings.scoring, threads=threads)
    rows = 0
    for result in results.values():
        if result.status != "scored":
            raise RuntimeError(f"era5_batch: {result.status} {result.reason}")
        with engine.begin() as conn:
            write_era5_lead(conn, key, result, now, settings.scoring.profile)
        rows += sum(len(v.levels) for v in result.variables.values())
    return rows


def run_child(kind: str, overrides: dict, run_id: int, profile: bool = False) -> dict:
    command = [sys.executable, "-m", __name__, "child", kind, json.dumps(overrides), str(run_id)]
    if profile:
        command.append("--profile")
    proc = subprocess.run(command, check=False, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{kind} child failed:\n{proc.stderr[-4000:]}")
    if profile:
        print(proc.stderr, file=sys.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="internal entry points of the scoring benchmark")
    sub = parser.add_subparsers(dest="command", required=True)
    fleet = sub.add_parser("fleet")
    fleet.add_argument("cache_dir", type=Path)
    fleet.add_argument("metagraph", type=Path)
    fleet.add_argument("grid_deg", type=float)
    child = sub.add_parser("child")
    child.add_argument("kind", choices=["day1", "era5", "era5_batch"])
    child.add_argument("overrides")
    child.add_argument("run_id", type=int)
    child.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "fleet":
        return serve_fleet(args.cache_dir, args.metagraph, args.grid_deg)
    print(json.dumps(measure(args.kind, json.loads(args.overrides), args.run_id, args.profile)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
