"""Benchmark: the validator's peak RSS while one hostile miner is handled, per class, vs honest miners.

One demo fleet (its own process) serves two honest miners and one miner per hostile class of issue
10, whose bombs decompress to 1 GiB. For the honest baseline and then for each class, a *fresh*
validator process runs a whole query / poll / freeze / open round against the two honest miners
(plus that one hostile miner) and reports its peak RSS (``VmHWM``), so no class inherits another's
high-water mark. The bound of issue 10: every class within 100 MB of the baseline.

    python -m weather_dagster_tests.benchmarks.bench_hostile [--grid-deg 1.0] [--steps 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

BOUND_MB = 100.0
HONEST_UIDS = (0, 1)


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> int:
    """One validator round over ``--uids`` in this (fresh) process; prints a JSON line."""
    import sqlalchemy as sa

    from weather_dagster.core.retry import RetryPolicy
    from weather_dagster.db.engine import Database
    from weather_dagster.db.schema import miner_responses
    from weather_dagster.db.steps import StepLog
    from weather_dagster.miners.keys import derived_seed, validator_keypair
    from weather_dagster.miners.lifecycle import create_round, run_until_settled, seed_miners
    from weather_dagster.miners.metagraph import metagraph_from_settings
    from weather_dagster.settings import load_settings

    uids = [int(u) for u in args.uids.split(",")]
    settings = load_settings(
        data_dir=Path(args.data_dir),
        miners={
            "allow_private_hosts": ("127.0.0.1",),
            "hotkey_seed": derived_seed("bench", "validator"),
            "metagraph_file": Path(args.metagraph),
            "forecast_steps": args.steps,
        },
        retry={
            "poll_first_delay_s": 0.2,
            "poll_interval_s": 0.2,
            "poll_max_attempts": 1000,
            "query_backoff_s": (0.2, 0.2, 0.2),
            "initiate_fetch_timeout_s": 1.0,
        },
    )
    database = Database(settings.resolved_database_url)
    engine = database.engine
    run_id = create_round(engine, datetime(2026, 11, 20, tzinfo=UTC), settings)
    snapshot = [info for info in metagraph_from_settings(settings).snapshot() if info.uid in uids]
    seed_miners(engine, StepLog(engine, RetryPolicy.from_settings(settings)), run_id, snapshot)
    started = time.perf_counter()
    settled = asyncio.run(run_until_settled(settings, engine, run_id, validator_keypair(settings), max_wait_s=600))
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(miner_responses.c.miner_uid, miner_responses.c.status, miner_responses.c.failure_category)
        ).all()
    database.dispose()
    outcome = {
        "settled": settled,
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "miners": {str(r.miner_uid): [r.status, r.failure_category] for r in rows},
    }
    print(json.dumps(outcome), flush=True)
    return 0


def _run_child(tmp: Path, name: str, metagraph: Path, uids: list[int], steps: int) -> dict:
    command = [sys.executable, "-m", "weather_dagster_tests.benchmarks.bench_hostile", "--child"]
    command += ["--uids", ",".join(map(str, uids)), "--metagraph", str(metagraph), "--steps", str(steps)]
    command += ["--data-dir", str(tmp / name)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"validator child for {name} failed:\n{done.stderr[-2000:]}")
    return json.loads(lines[-1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grid-deg", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--uids", default="")
    parser.add_argument("--metagraph", default="")
    parser.add_argument("--data-dir", default="")
    args = parser.parse_args()
    if args.child:
        return child(args)

    from weather_dagster.miners.demo.behaviours import HOSTILE_BEHAVIOURS

    hostile = {len(HONEST_UIDS) + i: b for i, b in enumerate(HOSTILE_BEHAVIOURS)}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        metagraph = tmp / "metagraph.json"
        env = {**os.environ, "WEATHER_DATA_DIR": str(tmp / "fleet"), "WEATHER_MINERS__FORECAST_STEPS": str(args.steps)}
        command = [sys.executable, "-m", "weather_dagster.cli", "miners", "serve"]
        command += ["--count", str(len(HONEST_UIDS) + len(hostile)), "--grid-deg", str(args.grid_deg)]
        command += ["--metagraph", str(metagraph)]
        for uid, behaviour in hostile.items():
            command += ["--behaviour", f"{uid}={behaviour.value}"]
        fleet = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        results: dict[str, dict] = {}
        try:
            for _ in range(1200):
                if metagraph.exists() or fleet.poll() is not None:
                    break
                time.sleep(0.1)
            if not metagraph.exists():
                raise RuntimeError("the demo fleet did not start")
            # A warm-up round fills the fleet's caches (bombs, fields) so every measured round is alike.
            _run_child(tmp, "warmup", metagraph, [*HONEST_UIDS, *hostile], args.steps)
            results["honest"] = _run_child(tmp, "honest", metagraph, list(HONEST_UIDS), args.steps)
            for uid, behaviour in hostile.items():
                results[behaviour.value] = _run_child(tmp, behaviour.value, metagraph, [*HONEST_UIDS, uid], args.steps)
        finally:
            fleet.send_signal(signal.SIGTERM)
            fleet.communicate(timeout=60)

    baseline = results["honest"]["peak_rss_mb"]
    print(f"grid_deg: {args.grid_deg}")
    print(f"steps: {args.steps}")
    print("bomb_decoded_bytes: 1073741824")
    print(f"honest_baseline_peak_rss_mb: {baseline:.1f}")
    ok = True
    for name, outcome in results.items():
        if name == "honest":
            continue
        uid = str(next(u for u, b in hostile.items() if b.value == name))
        honest_fine = all(outcome["miners"][str(u)][0] == "forecast_ready" for u in HONEST_UIDS)
        delta = outcome["peak_rss_mb"] - baseline
        ok &= outcome["settled"] and honest_fine and delta <= BOUND_MB
        status, category = outcome["miners"][uid]
        print(
            f"class {name}: peak_rss_mb {outcome['peak_rss_mb']:.1f} (delta {delta:+.1f}) "
            f"-> {status}/{category}, honest ok: {honest_fine}"
        )
    worst = max((n for n in results if n != "honest"), key=lambda n: results[n]["peak_rss_mb"])
    print(f"highest_hostile_class: {worst}")
    print(f"highest_hostile_peak_rss_mb: {results[worst]['peak_rss_mb']:.1f}")
    print(f"highest_delta_vs_honest_mb: {results[worst]['peak_rss_mb'] - baseline:+.1f} (bound {BOUND_MB:g})")
    print(f"within_bound: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
