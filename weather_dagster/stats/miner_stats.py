"""Per-miner aggregates over rounds (SPEC section 3, ``miner_stats``), keyed by (uid, hotkey).

Recomputed from ``weather_forecast_stats`` and ``weather_miner_responses`` for the miners asked for
(those whose scores changed), written with an upsert that leaves unchanged rows untouched.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from datetime import datetime

import numpy as np
import sqlalchemy as sa

from weather_dagster.db.schema import forecast_stats, miner_responses, miner_stats
from weather_dagster.db.upsert import insert_for

SUCCESS_STATES = {"day1_scored", "era5_scoring", "era5_scored"}
FAILURE_STATES = {"failed"}
HOSTING_OK = {"ok", "success", "available"}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def compute_miner_stats(conn: sa.Connection, uid: int, hotkey: str) -> dict:
    s = forecast_stats.c
    rows = conn.execute(
        sa.select(
            s.forecast_init_time,
            s.forecast_status,
            s.forecast_score_initial,
            s.era5_combined_score,
            s.overall_forecast_score,
            s.hosting_status,
            s.hosting_latency_ms,
            s.updated_at,
        )
        .where(s.miner_uid == uid, s.miner_hotkey == hotkey)
        .order_by(s.forecast_init_time)
    ).all()
    r = miner_responses.c
    categories = conn.execute(
        sa.select(r.failure_category).where(
            r.miner_uid == uid, r.miner_hotkey == hotkey, r.failure_category.is_not(None)
        )
    ).scalars()
    outcomes = [
        "success"
        if row.forecast_status in SUCCESS_STATES
        else "failure"
        if row.forecast_status in FAILURE_STATES
        else ""
        for row in rows
    ]
    # The current streak: how many of the latest decided rounds share the latest outcome.
    consecutive = {"success": 0, "failure": 0}
    decided = [o for o in outcomes if o]
    for outcome in reversed(decided):
        if outcome != decided[-1]:
            break
        consecutive[outcome] += 1
    overall = [row.overall_forecast_score for row in rows if row.overall_forecast_score is not None]
    hosting = [row.hosting_status for row in rows if row.hosting_status]
    successes, failures = outcomes.count("success"), outcomes.count("failure")
    hosting_ok = sum(1 for h in hosting if h in HOSTING_OK)
    return {
        "total_rounds": len(rows),
        "successful_forecasts": successes,
        "failed_forecasts": failures,
        "forecast_success_ratio": successes / len(rows) if rows else None,
        "hosting_successes": hosting_ok,
        "hosting_failures": len(hosting) - hosting_ok,
        "host_reliability_ratio": hosting_ok / len(hosting) if hosting else None,
        "avg_hosting_latency_ms": _mean([row.hosting_latency_ms for row in rows if row.hosting_latency_ms is not None]),
        "avg_day1_score": _mean([row.forecast_score_initial for row in rows if row.forecast_score_initial is not None]),
        "avg_era5_score": _mean([row.era5_combined_score for row in rows if row.era5_combined_score is not None]),
        "avg_overall_score": _mean(overall),
        "best_overall_score": max(overall) if overall else None,
        "worst_overall_score": min(overall) if overall else None,
        "score_stddev": float(np.std(overall)) if len(overall) > 1 else None,
        "consecutive_successes": consecutive["success"],
        "consecutive_failures": consecutive["failure"],
        "common_errors": dict(Counter(categories)) or None,
        "last_active": max((row.updated_at for row in rows), default=None),
    }


_COMPARE = [
    "total_rounds",
    "successful_forecasts",
    "failed_forecasts",
    "hosting_successes",
    "hosting_failures",
    "avg_day1_score",
    "avg_era5_score",
    "avg_overall_score",
    "best_overall_score",
    "worst_overall_score",
    "score_stddev",
    "consecutive_successes",
    "consecutive_failures",
    "last_active",
]


def update_miner_stats(conn: sa.Connection, miners: Iterable[tuple[int, str]], now: datetime) -> int:
    count = 0
    for uid, hotkey in sorted(set(miners)):
        values = compute_miner_stats(conn, uid, hotkey)
        for key, value in values.items():
            if isinstance(value, float) and not math.isfinite(value):
                values[key] = None
        stmt = insert_for(conn, miner_stats).values(miner_uid=uid, miner_hotkey=hotkey, updated_at=now, **values)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["miner_uid", "miner_hotkey"],
                set_={k: stmt.excluded[k] for k in [*values, "updated_at"]},
                where=sa.or_(*(miner_stats.c[k].is_distinct_from(stmt.excluded[k]) for k in _COMPARE)),
            )
        )
        count += 1
    return count
