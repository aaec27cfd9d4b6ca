"""API latency on PostgreSQL with 255 miners x 15 rounds of history (issue 15), and the query plans.

Run: ``make bench-api``. Seeds a throwaway PostgreSQL server with 15 rounds of 255 miners each (stats
rows, 14 steps and 66 score rows per miner and round), ANALYZEs, prints the EXPLAIN (ANALYZE) plans of
the round-miners and timeline queries, then times real HTTP requests to ``weather-dagster api serve``
(its own process) on loopback (one keep-alive client, rate limit lifted) and prints p50 / p99 per endpoint:
- ``round_miners``: a random round's miners, 100 a page, every page followed by its cursor;
- ``timeline``: a random miner's timeline in a random round (one page);
- ``scores``: a random miner's scores in a random round (one page of up to 100);
and, to separate the database from HTTP and Python, the same two queries executed directly.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from weather_dagster.api.pagination import PageRequest
from weather_dagster.api.queries import round_miners_statement, timeline_statement
from weather_dagster.db.engine import Database
from weather_dagster.db.schema import forecast_runs, forecast_stats, forecast_steps, miner_responses, miner_scores
from weather_dagster_tests.support.pg_server import PostgresServer

ROUNDS, MINERS, REQUESTS = 15, 255, 400
STEPS = [("query", 0), ("poll", 0), ("manifest", 0), ("day1", 0), *[("era5", 24 * i) for i in range(1, 11)]]
VARIABLES = ["", "2t", "msl", "10u", "10v", "z500"]


def seed(engine: sa.Engine) -> list[int]:
    base = datetime(2026, 10, 1, tzinfo=UTC)
    run_ids = []
    for r in range(ROUNDS):
        init = base + timedelta(days=r)
        with engine.begin() as conn:
            run_id = conn.execute(
                sa.insert(forecast_runs)
                .values(
                    gfs_init_time_utc=init,
                    previous_step_time_utc=init - timedelta(hours=6),
                    run_initiation_time=init,
                    status="completed",
                    miner_count=MINERS,
                    created_at=init,
                    updated_at=init,
                )
                .returning(forecast_runs.c.id)
            ).scalar_one()
            run_ids.append(run_id)
            common = {"run_id": run_id, "created_at": init, "updated_at": init}
            responses = [
                {**common, "miner_uid": uid, "miner_hotkey": f"hk{uid}", "status": "era5_scored"}
                for uid in range(MINERS)
            ]
            ids = conn.execute(sa.insert(miner_responses).returning(miner_responses.c.id), responses).scalars().all()
            conn.execute(
                sa.insert(forecast_stats),
                [
                    {
                        **common,
                        "miner_uid": uid,
                        "miner_hotkey": f"hk{uid}",
                        "forecast_init_time": init,
                        "forecast_status": "era5_scored",
                        "current_forecast_stage": "era5",
                        "current_forecast_status": "succeeded",
                        "overall_forecast_score": random.random(),
                        "miner_rank": uid + 1,
                    }
                    for uid in range(MINERS)
                ],
            )
            steps = []
            for uid in range(MINERS):
                for i, (name, lead) in enumerate(STEPS):
                    at = init + timedelta(hours=i)
                    steps.append(
                        {
                            **common,
                            "miner_uid": uid,
                            "miner_hotkey": f"hk{uid}",
                            "step_name": name,
                            "lead_hours": lead,
                            "status": "succeeded",
                            "started_at": at,
                            "completed_at": at,
                            "latency_ms": 12.5,
                        }
                    )
            # Rounds interleave their miners' steps in the log, as concurrent scoring runs do.
            random.shuffle(steps)
            conn.execute(sa.insert(forecast_steps), steps)
            scores = [
                {
                    "response_id": ids[uid],
                    "run_id": run_id,
                    "miner_uid": uid,
                    "miner_hotkey": f"hk{uid}",
                    "score_type": kind,
                    "lead_hours": lead,
                    "variable": var,
                    "score": random.random(),
                    "calculation_time": init,
                }
                for uid in range(MINERS)
                for kind, lead in [("day1", 0), *[("era5", 24 * i) for i in range(1, 11)]]
                for var in VARIABLES
            ]
            conn.execute(sa.insert(miner_scores), scores)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")
    return run_ids


def explain(engine: sa.Engine, title: str, stmt: sa.Select) -> None:
    sql = str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql).scalars().all()
    print(f"\n-- {title}\n{sql}\n" + "\n".join(plan))


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1e3 for s in samples)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return f"p50 {statistics.median(ms):7.2f} ms   p99 {p99:7.2f} ms   (n={len(ms)})"


def main() -> None:
    random.seed(15)
    with PostgresServer() as server:
        url = server.create_database("bench_api")
        database = Database(url)
        started = time.perf_counter()
        run_ids = seed(database.engine)
        with database.engine.connect() as conn:
            counts = {
                t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                for t in (forecast_stats, forecast_steps, miner_scores)
            }
        print(f"seeded {ROUNDS} rounds x {MINERS} miners in {time.perf_counter() - started:.0f} s: {counts}")
        mid = run_ids[len(run_ids) // 2]
        explain(database.engine, "round miners, first page", round_miners_statement(mid, PageRequest(100, None)))
        explain(
            database.engine, "round miners, a later page", round_miners_statement(mid, PageRequest(100, (99, "hk99")))
        )
        explain(database.engine, "miner timeline", timeline_statement(mid, 128, PageRequest(100, None)))

        query_only: dict[str, list[float]] = {"round_miners": [], "timeline": []}
        with database.engine.connect() as conn:
            for _ in range(REQUESTS):
                run_id, uid = random.choice(run_ids), random.randrange(MINERS)
                for name, stmt in (
                    ("round_miners", round_miners_statement(run_id, PageRequest(100, None))),
                    ("timeline", timeline_statement(run_id, uid, PageRequest(100, None))),
                ):
                    t0 = time.perf_counter()
                    conn.execute(stmt).all()
                    query_only[name].append(time.perf_counter() - t0)

        # The server in its own process, as deployed (``weather-dagster api serve``): client and server
        # sharing one interpreter would measure their contention for the GIL, not the API.
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEATHER_")}
        env.update(
            WEATHER_DATABASE_URL=url,
            WEATHER_API__PORT="0",
            WEATHER_API__RATE_LIMIT_PER_S="100000",
            WEATHER_API__RATE_LIMIT_BURST="100000",
        )
        cmd = [sys.executable, "-m", "weather_dagster.cli", "api", "serve"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = ""
        while "API and page:" not in line:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("api serve exited before printing its URL")
        base = line.split("page: ", 1)[1].split(" ", 1)[0] + "api/v1"
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                httpx.get(base + "/rounds", timeout=5)
                break
            time.sleep(0.1)
        timings: dict[str, list[float]] = {"round_miners": [], "timeline": [], "scores": []}
        try:
            with httpx.Client(timeout=30) as client:
                for _ in range(20):  # warm the pool and the caches
                    client.get(f"{base}/rounds/{mid}/miners").raise_for_status()
                for _ in range(REQUESTS):
                    run_id, uid = random.choice(run_ids), random.randrange(MINERS)
                    cursor, miners = None, 0
                    while True:
                        t0 = time.perf_counter()
                        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
                        body = client.get(f"{base}/rounds/{run_id}/miners", params=params).raise_for_status().json()
                        timings["round_miners"].append(time.perf_counter() - t0)
                        miners += len(body["items"])
                        if not (cursor := body["next_cursor"]):
                            break
                    assert miners == MINERS
                    t0 = time.perf_counter()
                    events = client.get(f"{base}/rounds/{run_id}/miners/{uid}/timeline").raise_for_status().json()
                    timings["timeline"].append(time.perf_counter() - t0)
                    assert len(events["items"]) == len(STEPS)
                    t0 = time.perf_counter()
                    client.get(f"{base}/rounds/{run_id}/miners/{uid}/scores").raise_for_status()
                    timings["scores"].append(time.perf_counter() - t0)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
            database.dispose()
        print(f"\nHTTP latency on loopback, {ROUNDS} rounds x {MINERS} miners on PostgreSQL:")
        for name, samples in timings.items():
            print(f"  {name:13s} {percentiles(samples)}")
        print("query only (SQLAlchemy Core on one connection, no HTTP):")
        for name, samples in query_only.items():
            print(f"  {name:13s} {percentiles(samples)}")


if __name__ == "__main__":
    main()
