"""The API's reads: one indexed query per endpoint, on the narrow tables and the subnet snapshot.

Every listing is a keyset page on a unique index (see ``pagination``); nothing here scans a whole
table. Free text that came from miners or from an import (error messages) passes through the core
sanitizer again on the way out, so a row written before the sanitizer existed cannot leak a secret.
The engine is opened read-only at the connection level: the API cannot write even by mistake.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from weather_dagster.api.pagination import PageRequest, keyset, page_of
from weather_dagster.core.errors import redact, truncate_utf8
from weather_dagster.db.engine import normalise_url
from weather_dagster.db.schema import (
    forecast_runs,
    forecast_stats,
    forecast_steps,
    miner_scores,
    subnet_snapshots,
    weight_sets,
    weights,
)
from weather_dagster.db.schema import score_receipts as receipts


def read_only_engine(url: str) -> sa.Engine:
    """An engine whose connections refuse writes: SQLite opened ``mode=ro``, PostgreSQL read-only sessions."""
    url = normalise_url(url)
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        engine = sa.create_engine(
            f"sqlite:///file:{path}?mode=ro&uri=true", connect_args={"timeout": 30, "check_same_thread": False}
        )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return sa.create_engine(
        parsed, pool_recycle=3600, pool_size=4, connect_args={"options": "-c default_transaction_read_only=on"}
    )


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def clean_text(text: str | None, max_bytes: int = 512) -> str | None:
    return truncate_utf8(redact(text), max_bytes) if text else text


def clean_error(error: Any) -> dict[str, Any] | None:
    """The sanitized form of a step's ``error_json``: type, category and message only."""
    if not isinstance(error, dict):
        return {"message": clean_text(str(error))} if error else None
    return {k: clean_text(str(error[k])) for k in ("type", "category", "message") if error.get(k) is not None}


# -- rounds ------------------------------------------------------------------------------------------


def _round(row: sa.Row) -> dict[str, Any]:
    return {
        "run_id": row.id,
        "gfs_init_time": _time(row.gfs_init_time_utc),
        "status": row.status,
        "miner_count": row.miner_count,
        "test_mode": row.test_mode,
        "started_at": _time(row.run_initiation_time),
        "completed_at": _time(row.completed_at),
        "error": clean_text(row.error_message),
    }


_ROUND_COLUMNS = [
    forecast_runs.c.id,
    forecast_runs.c.gfs_init_time_utc,
    forecast_runs.c.status,
    forecast_runs.c.miner_count,
    forecast_runs.c.test_mode,
    forecast_runs.c.run_initiation_time,
    forecast_runs.c.completed_at,
    forecast_runs.c.error_message,
]


def rounds(conn: sa.Connection, page: PageRequest) -> dict[str, Any]:
    stmt = keyset(sa.select(*_ROUND_COLUMNS), [forecast_runs.c.id], page, descending=True)
    return page_of(conn.execute(stmt).all(), page, lambda r: (r.id,), _round)


def one_round(conn: sa.Connection, run_id: int) -> dict[str, Any] | None:
    row = conn.execute(sa.select(*_ROUND_COLUMNS).where(forecast_runs.c.id == run_id)).one_or_none()
    return _round(row) if row else None


# -- a round's miners (weather_forecast_stats: one narrow row per miner, kept current by the step log) --

_s = forecast_stats.c
ROUND_MINER_COLUMNS = [
    _s.miner_uid,
    _s.miner_hotkey,
    _s.forecast_status,
    _s.current_forecast_stage,
    _s.current_forecast_status,
    _s.last_error_message,
    _s.retries_remaining,
    _s.next_scheduled_retry,
    _s.forecast_score_initial,
    _s.era5_combined_score,
    _s.era5_completeness,
    _s.overall_forecast_score,
    _s.miner_rank,
    _s.scoring_profile,
    _s.updated_at,
]


def round_miners_statement(run_id: int, page: PageRequest) -> sa.Select:
    stmt = sa.select(*ROUND_MINER_COLUMNS).where(_s.run_id == run_id)
    return keyset(stmt, [_s.miner_uid, _s.miner_hotkey], page)


def _round_miner(row: sa.Row) -> dict[str, Any]:
    return {
        "uid": row.miner_uid,
        "hotkey": row.miner_hotkey,
        "state": row.forecast_status,
        "stage": row.current_forecast_stage,
        "stage_status": row.current_forecast_status,
        "last_error": clean_text(row.last_error_message),
        "retries_remaining": row.retries_remaining,
        "next_retry": _time(row.next_scheduled_retry),
        "day1_score": row.forecast_score_initial,
        "era5_score": row.era5_combined_score,
        "era5_completeness": row.era5_completeness,
        "overall_score": row.overall_forecast_score,
        "rank": row.miner_rank,
        "scoring_profile": row.scoring_profile,
        "updated_at": _time(row.updated_at),
    }


def round_miners(conn: sa.Connection, run_id: int, page: PageRequest) -> dict[str, Any]:
    rows = conn.execute(round_miners_statement(run_id, page)).all()
    return page_of(rows, page, lambda r: (r.miner_uid, r.miner_hotkey), _round_miner)


# -- a miner's timeline (weather_forecast_steps, one event per step row, in the order they were created) --

_t = forecast_steps.c
TIMELINE_COLUMNS = [
    _t.id,
    _t.miner_hotkey,
    _t.step_name,
    _t.substep,
    _t.lead_hours,
    _t.status,
    _t.started_at,
    _t.completed_at,
    _t.retry_count,
    _t.next_retry_time,
    _t.latency_ms,
    _t.error_json,
    _t.created_at,
    _t.updated_at,
]


def timeline_statement(run_id: int, uid: int, page: PageRequest) -> sa.Select:
    stmt = sa.select(*TIMELINE_COLUMNS).where(_t.run_id == run_id, _t.miner_uid == uid)
    return keyset(stmt, [_t.id], page)


def _event(row: sa.Row) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": _time(row.completed_at or row.started_at or row.updated_at),
        "hotkey": row.miner_hotkey,
        "step": row.step_name,
        "substep": row.substep,
        "lead_hours": row.lead_hours,
        "status": row.status,
        "started_at": _time(row.started_at),
        "completed_at": _time(row.completed_at),
        "attempts": row.retry_count,
        "next_retry": _time(row.next_retry_time),
        "latency_ms": row.latency_ms,
        "error": clean_error(row.error_json),
    }


def timeline(conn: sa.Connection, run_id: int, uid: int, page: PageRequest) -> dict[str, Any]:
    rows = conn.execute(timeline_statement(run_id, uid, page)).all()
    return page_of(rows, page, lambda r: (r.id,), _event)


# -- scores per lead and variable (weather_miner_scores; '' is the aggregate over variables) --------

_m = miner_scores.c


def scores(conn: sa.Connection, run_id: int, uid: int, page: PageRequest) -> dict[str, Any]:
    stmt = sa.select(
        _m.id,
        _m.miner_hotkey,
        _m.score_type,
        _m.lead_hours,
        _m.variable,
        _m.score,
        _m.valid_time_utc,
        _m.scoring_profile,
    ).where(_m.run_id == run_id, _m.miner_uid == uid)
    rows = conn.execute(keyset(stmt, [_m.id], page)).all()

    def render(r: sa.Row) -> dict[str, Any]:
        return {
            "hotkey": r.miner_hotkey,
            "score_type": r.score_type,
            "lead_hours": r.lead_hours,
            "variable": r.variable or None,
            "score": r.score,
            "valid_time": _time(r.valid_time_utc),
            "scoring_profile": r.scoring_profile,
        }

    return page_of(rows, page, lambda r: (r.id,), render)


# -- subnet snapshot and weights ------------------------------------------------------------------


def snapshot(conn: sa.Connection, run_id: int | None) -> dict[str, Any] | None:
    """The round's snapshot, or the latest round's when ``run_id`` is None."""
    stmt = sa.select(subnet_snapshots.c.run_id, subnet_snapshots.c.summary, subnet_snapshots.c.taken_at)
    if run_id is None:
        stmt = stmt.order_by(subnet_snapshots.c.run_id.desc()).limit(1)
    else:
        stmt = stmt.where(subnet_snapshots.c.run_id == run_id)
    row = conn.execute(stmt).one_or_none()
    if row is None:
        return None
    return {"run_id": row.run_id, "taken_at": _time(row.taken_at), "summary": row.summary}


def weight_set_list(conn: sa.Connection, page: PageRequest) -> dict[str, Any]:
    w = weight_sets.c
    stmt = sa.select(w.id, w.computed_for, w.window_days, w.publisher, w.published_at)
    rows = conn.execute(keyset(stmt, [w.id], page, descending=True)).all()

    def render(r: sa.Row) -> dict[str, Any]:
        return {
            "weight_set_id": r.id,
            "computed_for": _time(r.computed_for),
            "window_days": r.window_days,
            "publisher": r.publisher,
            "published_at": _time(r.published_at),
        }

    return page_of(rows, page, lambda r: (r.id,), render)


def latest_weight_set(conn: sa.Connection) -> int | None:
    return conn.execute(sa.select(sa.func.max(weight_sets.c.id))).scalar()


def weight_values(conn: sa.Connection, set_id: int, page: PageRequest) -> dict[str, Any] | None:
    if conn.execute(sa.select(weight_sets.c.id).where(weight_sets.c.id == set_id)).scalar() is None:
        return None
    w = weights.c
    stmt = sa.select(w.miner_uid, w.mean_score, w.weight).where(w.weight_set_id == set_id)
    rows = conn.execute(keyset(stmt, [w.miner_uid], page)).all()
    body = page_of(
        rows,
        page,
        lambda r: (r.miner_uid,),
        lambda r: {"uid": r.miner_uid, "mean_score": r.mean_score, "weight": r.weight},
    )
    return {"weight_set_id": set_id, **body}


# -- receipts -------------------------------------------------------------------------------------


def has_receipts(conn: sa.Connection) -> bool:
    return sa.inspect(conn).has_table(receipts.name)


def _receipt(r: sa.Row) -> dict[str, Any]:
    return {
        "receipt_id": r.id,
        "run_id": r.run_id,
        "uid": r.miner_uid,
        "hotkey": r.miner_hotkey,
        "kind": r.kind,
        "lead_hours": r.lead_hours,
        "scoring_profile": r.scoring_profile,
        "receipt": json.loads(r.receipt_json),  # stored as its canonical (signed) bytes
        "receipt_sha256": r.receipt_sha256,
        "signature": r.signature,
        "signer_ss58": r.signer_ss58,
        "created_at": _time(r.created_at),
    }


def miner_receipts(conn: sa.Connection, run_id: int, uid: int, page: PageRequest) -> dict[str, Any]:
    stmt = sa.select(receipts).where(receipts.c.run_id == run_id, receipts.c.miner_uid == uid)
    rows = conn.execute(keyset(stmt, [receipts.c.id], page)).all()
    return page_of(rows, page, lambda r: (r.id,), _receipt)


def one_receipt(conn: sa.Connection, receipt_id: int) -> dict[str, Any] | None:
    row = conn.execute(sa.select(receipts).where(receipts.c.id == receipt_id)).one_or_none()
    return _receipt(row) if row else None
