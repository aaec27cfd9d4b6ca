"""Which dynamic miner partitions to retire so the Dagster instance stays fast.

Miner partition keys are uids, shared by every round; a uid is retired when no round inside the
retention window included it (a deregistered uid's history stays in the product's tables).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import sqlalchemy as sa

from weather_dagster.db.schema import forecast_runs, miner_responses


def uids_in_use(conn: sa.Connection, now: datetime, retention_days: int) -> set[int]:
    r, runs = miner_responses.c, forecast_runs.c
    since = now - timedelta(days=retention_days)
    query = (
        sa.select(r.miner_uid)
        .join(forecast_runs, runs.id == r.run_id)
        .where(runs.gfs_init_time_utc >= since)
        .distinct()
    )
    return set(conn.execute(query).scalars())


def keys_to_retire(existing_keys: Iterable[str], in_use: set[int]) -> list[str]:
    return sorted((k for k in existing_keys if not k.isdigit() or int(k) not in in_use), key=lambda k: (len(k), k))
