"""One Gaia source row -> one row for this project's table (pure functions; the importer maps ids).

Kept apart from the copier so each conversion reads as the mapping table in ``import_reference``
says, and so the copier stays about ordering, ids and idempotence.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from weather_dagster.core.states import MinerForecastStatus, RoundStatus
from weather_dagster.db import gaia_source as g

Row = dict[str, Any]
PROFILE = "reference"  # Gaia's rules are this project's reference profile (settings/profile.py)


def miner(row: sa.Row) -> Row:
    port = row.port if row.port is not None and 0 <= row.port <= 65535 else 0
    return {
        "uid": row.uid,
        "hotkey": g.clip(row.hotkey, 64) or "",
        "coldkey": g.clip(row.coldkey, 64) or "",
        "ip": g.clip(row.ip, 64) or "",
        "port": port,
        "stake": g.finite(row.stake) or 0.0,
        "updated_at": g.utc(row.last_updated),
    }


def run(row: sa.Row, miner_count: int, previous_step_offset: timedelta) -> Row:
    init, initiated = g.utc(row.gfs_init_time_utc), g.utc(row.run_initiation_time)
    status = g.run_status(row.status)
    note = None if status is RoundStatus.COMPLETED else f"gaia status {row.status!r}"
    return {
        "gfs_init_time_utc": init,
        "previous_step_time_utc": init - previous_step_offset,
        "run_initiation_time": initiated,
        "status": status.value,
        "test_mode": False,
        "miner_count": miner_count,
        "error_message": "; ".join(m for m in (row.error_message, note) if m) or None,
        "completed_at": g.utc(row.completion_time),
        "created_at": initiated,
        "updated_at": initiated,
    }


def response(row: sa.Row, run_id: int) -> Row:
    day1, era5 = g.utc(row.day1_scoring_completed_at), g.utc(row.era5_scoring_completed_at)
    status = g.response_status(row.status, day1 is not None, era5 is not None)
    received = g.utc(row.response_time)
    return {
        "run_id": run_id,
        "miner_uid": row.miner_uid,
        "miner_hotkey": g.clip(row.miner_hotkey, 64),
        "status": status.value,
        "job_id": g.clip(row.job_id, 128),
        "zarr_store_url": row.kerchunk_json_url,
        "verification_hash_claimed": g.clip(row.verification_hash_claimed, 64),
        "frozen_manifest": row.frozen_manifest_files,
        "manifest_frozen_at": g.utc(row.manifest_frozen_at),
        "response_time": received,
        "inference_started_at": g.utc(row.inference_started_at),
        "inference_completed_at": g.utc(row.inference_completed_at),
        "day1_scored_at": day1,
        "era5_scored_at": era5,
        "retry_count": max(0, row.retry_count or 0),
        "next_retry_time": g.utc(row.next_retry_time),
        "failure_category": "gaia_import" if status is MinerForecastStatus.FAILED else None,
        "error_message": row.error_message,
        "created_at": received,
        "updated_at": received,
    }


def score_key(row: sa.Row) -> tuple[str, int, str]:
    """This project's key inside a response: (score_type, lead_hours, variable)."""
    return g.clip(row.score_type, 32) or "", row.lead_hours or 0, g.clip(row.variable_level, 32) or ""


def score(row: sa.Row, response_id: int, run_id: int) -> Row:
    metrics = row.metrics
    if row.error_message:
        metrics = {**(metrics if isinstance(metrics, dict) else {}), "gaia_error_message": row.error_message}
    score_type, lead_hours, variable = score_key(row)
    return {
        "response_id": response_id,
        "run_id": run_id,
        "miner_uid": row.miner_uid,
        "miner_hotkey": g.clip(row.miner_hotkey, 64),
        "score_type": score_type,
        "lead_hours": lead_hours,
        "variable": variable,
        "score": g.finite(row.score),
        "metrics": metrics,
        "valid_time_utc": g.utc(row.valid_time_utc),
        "calculation_time": g.utc(row.calculation_time),
        "scoring_profile": PROFILE,
    }


def stats(row: sa.Row, run_id: int) -> Row:
    overall, completeness = g.finite(row.overall_forecast_score), g.finite(row.era5_completeness)
    return {
        "run_id": run_id,
        "miner_uid": row.miner_uid,
        "miner_hotkey": g.clip(row.miner_hotkey, 64),
        "forecast_init_time": g.utc(row.forecast_init_time),
        "forecast_status": g.stats_status(row.forecast_status, overall, completeness).value,
        "current_forecast_stage": g.clip(row.current_forecast_stage, 64),
        "current_forecast_status": g.step_status(row.current_forecast_status),
        "last_error_message": row.last_error_message,
        "retries_remaining": row.retries_remaining,
        "next_scheduled_retry": g.utc(row.next_scheduled_retry),
        "forecast_score_initial": g.finite(row.forecast_score_initial),
        "era5_combined_score": g.finite(row.era5_combined_score),
        "era5_completeness": completeness,
        "overall_forecast_score": overall,
        "avg_rmse": g.finite(row.avg_rmse),
        "avg_acc": g.finite(row.avg_acc),
        "avg_skill_score": g.finite(row.avg_skill_score),
        "hosting_status": g.clip(row.hosting_status, 32),
        "hosting_latency_ms": g.finite(row.hosting_latency_ms),
        "forecast_inference_time": g.finite(row.forecast_inference_duration_seconds),
        "miner_rank": row.miner_rank,
        "scoring_profile": PROFILE,
        "created_at": g.utc(row.created_at),
        "updated_at": g.utc(row.updated_at),
    }


def round_score(run_id: int, uid: int, value: float, hotkey: str, overall: float | None, row: sa.Row) -> Row:
    return {
        "run_id": run_id,
        "miner_uid": uid,
        "miner_hotkey": hotkey,
        "score": value,
        "overall_score": overall,
        "winner_bonus": 0.0,  # Gaia does not record the bonus part of a vector entry
        "scoring_profile": PROFILE,
        "computed_at": g.utc(row.created_at),
    }
