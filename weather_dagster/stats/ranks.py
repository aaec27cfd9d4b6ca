"""Ranks of miners within a round, by overall score (1 = best; ties share the better rank).

A rank depends on every other miner's score, so the ranking of a round is recomputed whenever a
score in that round changed, but only rows whose rank actually moved are written: a miner whose
position is unchanged keeps its row (and ``updated_at``) untouched.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from weather_dagster.db.schema import forecast_stats


def competition_ranks(scores: dict[tuple[int, str], float | None]) -> dict[tuple[int, str], int | None]:
    """'1224' ranking of the scored rows; unscored rows get no rank."""
    ordered = sorted(((s, k) for k, s in scores.items() if s is not None), key=lambda item: -item[0])
    ranks: dict[tuple[int, str], int | None] = dict.fromkeys(scores)
    previous, previous_rank = None, 0
    for position, (score, key) in enumerate(ordered, start=1):
        rank = previous_rank if score == previous else position
        ranks[key] = rank
        previous, previous_rank = score, rank
    return ranks


def update_ranks(conn: sa.Connection, run_id: int, now: datetime) -> int:
    """Write changed ranks of one round; returns how many rows moved."""
    c = forecast_stats.c
    rows = conn.execute(
        sa.select(c.miner_uid, c.miner_hotkey, c.overall_forecast_score, c.miner_rank).where(c.run_id == run_id)
    ).all()
    current = {(uid, hotkey): rank for uid, hotkey, _s, rank in rows}
    ranks = competition_ranks({(uid, hotkey): score for uid, hotkey, score, _r in rows})
    moved = 0
    for (uid, hotkey), rank in ranks.items():
        if current[(uid, hotkey)] == rank:
            continue
        conn.execute(
            sa.update(forecast_stats)
            .where(c.run_id == run_id, c.miner_uid == uid, c.miner_hotkey == hotkey)
            .values(miner_rank=rank, updated_at=now)
        )
        moved += 1
    return moved
