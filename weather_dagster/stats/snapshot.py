"""A per-round summary of the subnet (``weather_subnet_snapshots``): what a dashboard shows first."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import numpy as np
import sqlalchemy as sa

from weather_dagster.db.schema import forecast_stats, subnet_snapshots
from weather_dagster.db.upsert import insert_for
from weather_dagster.scoring.store import clean


def build_snapshot(conn: sa.Connection, run_id: int) -> dict:
    s = forecast_stats.c
    rows = conn.execute(
        sa.select(
            s.miner_uid,
            s.miner_hotkey,
            s.forecast_status,
            s.overall_forecast_score,
            s.era5_completeness,
            s.miner_rank,
            s.scoring_profile,
        ).where(s.run_id == run_id)
    ).all()
    scores = [r.overall_forecast_score for r in rows if r.overall_forecast_score is not None]
    leaderboard = sorted((r for r in rows if r.miner_rank is not None), key=lambda r: (r.miner_rank, r.miner_uid))[:20]
    return clean(
        {
            "miners": len(rows),
            "by_status": dict(sorted(Counter(r.forecast_status for r in rows).items())),
            "scored": len(scores),
            # Which rules produced these scores (a round scored under two profiles shows both).
            "scoring_profiles": sorted({r.scoring_profile for r in rows if r.overall_forecast_score is not None}),
            "mean_overall": float(np.mean(scores)) if scores else None,
            "median_overall": float(np.median(scores)) if scores else None,
            "max_overall": max(scores) if scores else None,
            "mean_era5_completeness": float(np.mean([r.era5_completeness or 0.0 for r in rows])) if rows else None,
            "leaderboard": [
                {
                    "rank": r.miner_rank,
                    "uid": r.miner_uid,
                    "hotkey": r.miner_hotkey,
                    "overall": r.overall_forecast_score,
                }
                for r in leaderboard
            ],
        }
    )


def write_snapshot(conn: sa.Connection, run_id: int, now: datetime) -> dict:
    summary = build_snapshot(conn, run_id)
    stmt = insert_for(conn, subnet_snapshots).values(run_id=run_id, summary=summary, taken_at=now)
    existing = conn.execute(sa.select(subnet_snapshots.c.summary).where(subnet_snapshots.c.run_id == run_id)).scalar()
    if existing == summary:
        return summary  # unchanged: leave the row (and its taken_at) as it is
    conn.execute(
        stmt.on_conflict_do_update(index_elements=["run_id"], set_={"summary": stmt.excluded.summary, "taken_at": now})
    )
    return summary
