"""The parts of a Gaia v2.9.x validator database the switch-over importer reads, and how they map.

Only the columns the importer reads are declared (lightweight ``sa.table`` constructs, no reflection
of the 260-column ``score_table``), so a Gaia database with extra columns or tables still imports;
:func:`check_schema` names what is missing when a database is not a Gaia one. The status mappings
live here because Gaia's status strings are free text grown over many releases: each mapping is a
short rule list, and the original string is kept in the row's error text so nothing is lost.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from weather_dagster.core.states import MinerForecastStatus, RoundStatus, StepStatus

N_UIDS = 256


class ImportReferenceError(RuntimeError):
    """The source cannot be imported: unreachable, or not a Gaia validator database."""


def _table(name: str, *columns: str) -> sa.TableClause:
    return sa.table(name, *(sa.column(c) for c in columns))


node_table = _table("node_table", "uid", "hotkey", "coldkey", "ip", "port", "stake", "last_updated")
runs = _table(
    "weather_forecast_runs",
    "id",
    "run_initiation_time",
    "target_forecast_time_utc",
    "gfs_init_time_utc",
    "status",
    "completion_time",
    "error_message",
)
responses = _table(
    "weather_miner_responses",
    "id",
    "run_id",
    "miner_uid",
    "miner_hotkey",
    "response_time",
    "job_id",
    "kerchunk_json_url",
    "frozen_manifest_files",
    "verification_hash_claimed",
    "manifest_frozen_at",
    "status",
    "error_message",
    "retry_count",
    "next_retry_time",
    "inference_started_at",
    "inference_completed_at",
    "day1_scoring_completed_at",
    "era5_scoring_completed_at",
)
scores = _table(
    "weather_miner_scores",
    "id",
    "response_id",
    "run_id",
    "miner_uid",
    "miner_hotkey",
    "score_type",
    "calculation_time",
    "metrics",
    "score",
    "error_message",
    "lead_hours",
    "variable_level",
    "valid_time_utc",
)
stats = _table(
    "weather_forecast_stats",
    "id",
    "miner_uid",
    "miner_hotkey",
    "miner_rank",
    "run_id",
    "forecast_init_time",
    "forecast_status",
    "current_forecast_stage",
    "current_forecast_status",
    "last_error_message",
    "retries_remaining",
    "next_scheduled_retry",
    "forecast_score_initial",
    "era5_combined_score",
    "era5_completeness",
    "overall_forecast_score",
    "avg_rmse",
    "avg_acc",
    "avg_skill_score",
    "forecast_inference_duration_seconds",
    "hosting_status",
    "hosting_latency_ms",
    "created_at",
    "updated_at",
)
UID_COLUMNS = [f"uid_{uid}_score" for uid in range(N_UIDS)]
score_table = _table("score_table", "task_name", "task_id", "created_at", *UID_COLUMNS)

SOURCE_TABLES = (node_table, runs, responses, scores, stats, score_table)

# Per-run round vectors: ``weather_scores_<run_id>_<YYYYmmddTHHMMZ>`` (v2.9.x, one row per run, updated
# in place), and the older ``initial_/final_weather_scores_<run_id>``. The generic ``final_weather_scores``
# rows belong to no run and are not imported (they are counted in the report).
_VECTOR_TASK_ID = re.compile(r"^(?:weather_scores_(\d+)_.*|(initial|final)_weather_scores_(\d+))$")


def vector_run_id(task_id: str | None) -> tuple[int, int] | None:
    """(source run id, preference) of a per-run vector row; lower preference wins for one run."""
    match = _VECTOR_TASK_ID.match(task_id or "")
    if not match:
        return None
    if match.group(1):
        return int(match.group(1)), 0
    return int(match.group(3)), 1 if match.group(2) == "final" else 2


def check_schema(engine: sa.Engine) -> None:
    """Raise :class:`ImportReferenceError` naming every table or column a Gaia database would have."""
    inspector = sa.inspect(engine)
    present = set(inspector.get_table_names())
    problems: list[str] = []
    for table in SOURCE_TABLES:
        if table.name not in present:
            problems.append(f"table {table.name!r} is missing")
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        missing = [c.name for c in table.columns if c.name not in have]
        if missing:
            problems.append(f"table {table.name!r} lacks column(s) {', '.join(missing[:8])}")
    if problems:
        url = engine.url.render_as_string(hide_password=True)
        raise ImportReferenceError(f"{url} is not a Gaia v2.9.x validator database: " + "; ".join(problems))


# -- value conversions -----------------------------------------------------------------------------


def utc(value: datetime | None) -> datetime | None:
    """Gaia columns are TIMESTAMPTZ; a naive value (a hand-made database) is taken as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def finite(value: Any) -> float | None:
    """NULL, NaN and infinities all mean "no score" (the reference itself treats NaN as 0 / absent)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def clip(text: Any, length: int) -> str | None:
    return None if text is None else str(text)[:length]


# -- status mappings ------------------------------------------------------------------------------

_FAILED_WORDS = ("fail", "error", "timeout", "offline", "mismatch", "invalid", "stalled", "abandon", "no_")


def run_status(status: str | None) -> RoundStatus:
    """Imported rounds are history: Dagster never resumes them, so each maps to a terminal status.

    ``completed`` stays completed; anything that names a failure becomes ``error``; a round still in
    flight in Gaia (its ERA5 leads were being scored) becomes ``expired``: its round vector is kept as
    Gaia last wrote it and counts in the weight window exactly like Gaia's own row did.
    """
    text = (status or "").lower()
    if text == "completed":
        return RoundStatus.COMPLETED
    if any(word in text for word in _FAILED_WORDS):
        return RoundStatus.ERROR
    return RoundStatus.EXPIRED


def response_status(status: str | None, day1_done: bool, era5_done: bool) -> MinerForecastStatus:
    """Gaia's response status (free text) onto the miner-forecast machine, by the furthest stage reached."""
    text = (status or "").lower()
    if "cancel" in text:
        return MinerForecastStatus.CANCELLED
    if any(word in text for word in _FAILED_WORDS):
        return MinerForecastStatus.FAILED
    if era5_done or "era5" in text or text in ("completed", "scored"):
        return MinerForecastStatus.ERA5_SCORED
    if day1_done or "day1" in text:
        return MinerForecastStatus.DAY1_SCORED
    if text.startswith("verified") or text in ("forecast_ready", "forecast_submitted", "inference_complete"):
        return MinerForecastStatus.FORECAST_READY
    if "inference" in text or text.startswith("awaiting") or text.startswith("polling"):
        return MinerForecastStatus.INFERENCE_RUNNING
    if "fetch" in text or "accepted" in text or text in ("received", "query_successful", "queued"):
        return MinerForecastStatus.FETCH_INITIATED
    return MinerForecastStatus.CREATED


def stats_status(forecast_status: str | None, overall: float | None, completeness: float | None) -> MinerForecastStatus:
    """Gaia's ``forecast_status`` (completed / failed / error / in-flight words) onto the same machine."""
    text = (forecast_status or "").lower()
    if text == "completed":
        return MinerForecastStatus.ERA5_SCORED if completeness else MinerForecastStatus.DAY1_SCORED
    return response_status(text, overall is not None, bool(completeness))


def step_status(status: str | None) -> str | None:
    """``current_forecast_status`` is CHECK-constrained here; Gaia values outside the enum become NULL."""
    text = (status or "").lower()
    if text in {s.value for s in StepStatus}:
        return text
    return {"completed": StepStatus.SUCCEEDED.value, "error": StepStatus.FAILED.value}.get(text)
