"""One forecast served for several uids of a round: detected, recorded on every uid involved.

The reference validator fails the later uid that reports a job_id another uid of the round already
holds ("job_id ... belongs to different miner") and leaves the first alone; we do the same. The same
frozen manifest hash on several uids is recorded on each of them (step context), failing none: two
hotkeys cannot sign one manifest, so it only happens when one miner process answers for several uids.

Both checks run after this uid's own value is committed, and order the holders by (time, uid): two
uids checking at the same moment agree on which is first, so exactly one keeps the job.
"""

from __future__ import annotations

import sqlalchemy as sa

from weather_dagster.core.errors import MinerRejected
from weather_dagster.db.schema import forecast_steps, miner_responses
from weather_dagster.db.steps import StepKey


class DuplicateForecast(MinerRejected):
    """This uid reported a job another uid of the round already holds: failed for good, no retry."""

    category = "duplicate_forecast"


def _holders(conn: sa.Connection, run_id: int, column: sa.Column, value: str, when: sa.Column) -> list[sa.Row]:
    r = miner_responses.c
    return list(
        conn.execute(
            sa.select(r.miner_uid, r.miner_hotkey, when.label("at"))
            .where(r.run_id == run_id, column == value)
            .order_by(when, r.miner_uid)
        )
    )


def _note(conn: sa.Connection, key: StepKey, step_name: str, note: dict) -> None:
    """Merge ``note`` into the context of that uid's step (the operator's view of the step)."""
    s = forecast_steps.c
    where = sa.and_(
        s.run_id == key.run_id,
        s.miner_uid == key.miner_uid,
        s.miner_hotkey == key.miner_hotkey,
        s.step_name == step_name,
    )
    for row in conn.execute(sa.select(s.id, s.context).where(where)):
        conn.execute(sa.update(forecast_steps).where(s.id == row.id).values(context={**(row.context or {}), **note}))


def check_job_id(engine: sa.Engine, key: StepKey, job_id: str) -> list[int]:
    """Raise DuplicateForecast when an earlier uid of the round holds ``job_id``; note it on the first.

    Returns the uids holding ``job_id`` when this uid is the first of several (for its own context).
    """
    r = miner_responses.c
    with engine.begin() as conn:
        holders = _holders(conn, key.run_id, r.job_id, job_id, r.response_time)
        if len(holders) < 2:
            return []
        first = holders[0]
        uids = [h.miner_uid for h in holders]
        first_key = StepKey(key.run_id, first.miner_uid, first.miner_hotkey, key.step_name)
        _note(conn, first_key, "query", {"duplicate_job_id_uids": uids})
    if first.miner_uid != key.miner_uid:
        raise DuplicateForecast(
            f"job_id {job_id[:64]} belongs to different miner (uid {first.miner_uid}); uids reporting it: {uids}"
        )
    return uids


def note_same_manifest(engine: sa.Engine, key: StepKey, verification_hash: str) -> list[int]:
    """Record on every uid of the round frozen with ``verification_hash`` that they share it; returns the uids."""
    r = miner_responses.c
    with engine.begin() as conn:
        holders = _holders(conn, key.run_id, r.verification_hash_claimed, verification_hash, r.manifest_frozen_at)
        holders = [h for h in holders if h.at is not None]
        uids = [h.miner_uid for h in holders]
        if len(holders) < 2:
            return uids
        for holder in holders:
            other = StepKey(key.run_id, holder.miner_uid, holder.miner_hotkey, key.step_name)
            _note(conn, other, "manifest", {"same_manifest_hash_uids": uids})
    return uids
