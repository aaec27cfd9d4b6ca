"""All product tables of SPEC section 3, as SQLAlchemy Core metadata.

Rules kept here once: natural-key columns are NOT NULL (uid -1 / hotkey 'coordinator' for round-level
steps, '' and 0 as "none" sentinels inside keys), every status column is CHECK-constrained to its
enum, and constraint names follow one convention so migrations can drop them on both databases.
Migrations under ``sql/`` must produce exactly this metadata (a test compares them).
"""

from __future__ import annotations

from enum import StrEnum

import sqlalchemy as sa

from weather_dagster.core.states import MinerForecastStatus, RoundStatus, StepStatus
from weather_dagster.db.types import UTCDateTime

COORDINATOR_UID = -1
COORDINATOR_HOTKEY = "coordinator"

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _enum_check(column: str, enum: type[StrEnum], name: str) -> sa.CheckConstraint:
    values = ", ".join(f"'{member.value}'" for member in enum)
    return sa.CheckConstraint(f"{column} IN ({values})", name=name)


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    ]


forecast_runs = sa.Table(
    "weather_forecast_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("gfs_init_time_utc", UTCDateTime(), nullable=False),
    sa.Column("previous_step_time_utc", UTCDateTime(), nullable=False),
    sa.Column("run_initiation_time", UTCDateTime(), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("test_mode", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("miner_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error_message", sa.Text),
    sa.Column("completed_at", UTCDateTime()),
    *_timestamps(),
    sa.UniqueConstraint("gfs_init_time_utc"),
    _enum_check("status", RoundStatus, "status"),
)

miners = sa.Table(
    "miners",
    metadata,
    sa.Column("uid", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("hotkey", sa.String(64), nullable=False),
    sa.Column("coldkey", sa.String(64), nullable=False, server_default=""),
    sa.Column("ip", sa.String(64), nullable=False, server_default=""),
    sa.Column("port", sa.Integer, nullable=False, server_default="0"),
    sa.Column("stake", sa.Float, nullable=False, server_default="0"),
    sa.Column("validator_permit", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.CheckConstraint("uid >= 0 AND uid <= 255", name="uid_range"),
    sa.CheckConstraint("port >= 0 AND port <= 65535", name="port_range"),
)

miner_responses = sa.Table(
    "weather_miner_responses",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("weather_forecast_runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("miner_uid", sa.Integer, nullable=False),
    sa.Column("miner_hotkey", sa.String(64), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("job_id", sa.String(128)),
    sa.Column("zarr_store_url", sa.Text),
    sa.Column("verification_hash_claimed", sa.String(64)),
    sa.Column("frozen_manifest", sa.JSON),
    sa.Column("manifest_frozen_at", UTCDateTime()),
    sa.Column("response_time", UTCDateTime()),
    sa.Column("inference_started_at", UTCDateTime()),
    sa.Column("inference_completed_at", UTCDateTime()),
    sa.Column("day1_scored_at", UTCDateTime()),
    sa.Column("era5_scored_at", UTCDateTime()),
    sa.Column("retry_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_retry_time", UTCDateTime()),
    sa.Column("failure_category", sa.String(64)),
    sa.Column("error_message", sa.Text),
    *_timestamps(),
    sa.UniqueConstraint("run_id", "miner_uid", "miner_hotkey"),
    _enum_check("status", MinerForecastStatus, "status"),
    sa.CheckConstraint("miner_uid >= 0 AND miner_uid <= 255", name="uid_range"),
)

forecast_steps = sa.Table(
    "weather_forecast_steps",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("weather_forecast_runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("miner_uid", sa.Integer, nullable=False),
    sa.Column("miner_hotkey", sa.String(64), nullable=False),
    sa.Column("step_name", sa.String(32), nullable=False),
    sa.Column("substep", sa.String(64), nullable=False, server_default=""),
    sa.Column("lead_hours", sa.Integer, nullable=False, server_default="0"),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("started_at", UTCDateTime()),
    sa.Column("completed_at", UTCDateTime()),
    sa.Column("retry_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_retry_time", UTCDateTime()),
    sa.Column("lease_expires_at", UTCDateTime()),
    sa.Column("claimed_by", sa.String(128)),
    sa.Column("latency_ms", sa.Float),
    sa.Column("error_json", sa.JSON),
    sa.Column("context", sa.JSON),
    sa.Column("dagster_run_id", sa.String(64)),
    *_timestamps(),
    sa.UniqueConstraint("run_id", "miner_uid", "miner_hotkey", "step_name", "substep", "lead_hours"),
    _enum_check("status", StepStatus, "status"),
    sa.CheckConstraint("miner_uid >= -1 AND miner_uid <= 255", name="uid_range"),
    sa.CheckConstraint("retry_count >= 0", name="retry_count_non_negative"),
    sa.Index(None, "status", "next_retry_time"),
    sa.Index(None, "run_id", "miner_uid", "step_name"),
)

miner_scores = sa.Table(
    "weather_miner_scores",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "response_id", sa.Integer, sa.ForeignKey("weather_miner_responses.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("miner_uid", sa.Integer, nullable=False),
    sa.Column("miner_hotkey", sa.String(64), nullable=False),
    sa.Column("score_type", sa.String(32), nullable=False),
    sa.Column("lead_hours", sa.Integer, nullable=False, server_default="0"),
    # '' is the aggregate over variables for that score type and lead.
    sa.Column("variable", sa.String(32), nullable=False, server_default=""),
    sa.Column("score", sa.Float),
    sa.Column("metrics", sa.JSON),
    sa.Column("valid_time_utc", UTCDateTime()),
    sa.Column("calculation_time", UTCDateTime(), nullable=False),
    # The scoring profile (settings/profile.py) whose rules produced the row.
    sa.Column("scoring_profile", sa.String(16), nullable=False, server_default="reference"),
    sa.UniqueConstraint("response_id", "score_type", "lead_hours", "variable"),
    sa.Index(None, "run_id", "miner_uid"),
)

component_scores = sa.Table(
    "weather_forecast_component_scores",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "response_id", sa.Integer, sa.ForeignKey("weather_miner_responses.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("miner_uid", sa.Integer, nullable=False),
    sa.Column("miner_hotkey", sa.String(64), nullable=False),
    sa.Column("score_type", sa.String(32), nullable=False),
    sa.Column("lead_hours", sa.Integer, nullable=False),
    sa.Column("variable", sa.String(32), nullable=False),
    # 0 for surface variables.
    sa.Column("pressure_level", sa.Integer, nullable=False, server_default="0"),
    sa.Column("valid_time_utc", UTCDateTime()),
    sa.Column("rmse", sa.Float),
    sa.Column("mse", sa.Float),
    sa.Column("acc", sa.Float),
    sa.Column("skill_score", sa.Float),
    sa.Column("bias", sa.Float),
    sa.Column("mae", sa.Float),
    sa.Column("pattern_correlation", sa.Float),
    sa.Column("clone_distance", sa.Float),
    sa.Column("clone_penalty", sa.Float),
    sa.Column("checks_passed", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("checks", sa.JSON),
    sa.Column("variable_weight", sa.Float),
    sa.Column("calculation_duration_ms", sa.Float),
    sa.Column("calculation_time", UTCDateTime(), nullable=False),
    # The scoring profile (settings/profile.py) whose rules produced the row.
    sa.Column("scoring_profile", sa.String(16), nullable=False, server_default="reference"),
    sa.UniqueConstraint("response_id", "score_type", "lead_hours", "variable", "pressure_level"),
    sa.Index(None, "run_id", "miner_uid"),
)

forecast_stats = sa.Table(
    "weather_forecast_stats",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("weather_forecast_runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("miner_uid", sa.Integer, nullable=False),
    sa.Column("miner_hotkey", sa.String(64), nullable=False),
    sa.Column("forecast_init_time", UTCDateTime(), nullable=False),
    sa.Column("forecast_status", sa.String(32), nullable=False),
    sa.Column("current_forecast_stage", sa.String(64)),
    sa.Column("current_forecast_status", sa.String(32)),
    sa.Column("last_error_message", sa.Text),
    sa.Column("retries_remaining", sa.Integer),
    sa.Column("next_scheduled_retry", UTCDateTime()),
    sa.Column("forecast_score_initial", sa.Float),
    sa.Column("era5_combined_score", sa.Float),
    sa.Column("era5_completeness", sa.Float),
    sa.Column("overall_forecast_score", sa.Float),
    sa.Column("avg_rmse", sa.Float),
    sa.Column("avg_acc", sa.Float),
    sa.Column("avg_skill_score", sa.Float),
    sa.Column("hosting_status", sa.String(32)),
    sa.Column("hosting_latency_ms", sa.Float),
    sa.Column("forecast_inference_time", sa.Float),
    sa.Column("miner_rank", sa.Integer),
    # The scoring profile (settings/profile.py) whose rules produced the row.
    sa.Column("scoring_profile", sa.String(16), nullable=False, server_default="reference"),
    *_timestamps(),
    sa.UniqueConstraint("run_id", "miner_uid", "miner_hotkey"),
    _enum_check("forecast_status", MinerForecastStatus, "forecast_status"),
    sa.CheckConstraint(
        "current_forecast_status IS NULL OR current_forecast_status IN ("
        + ", ".join(f"'{s.value}'" for s in StepStatus)
        + ")",
        name="current_forecast_status",
    ),
)

miner_stats = sa.Table(
    "miner_stats",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("miner_uid", sa.Integer, nullable=False),
    sa.Column("miner_hotkey", sa.String(64), nullable=False),
    sa.Column("total_rounds", sa.Integer, nullable=False, server_default="0"),
    sa.Column("successful_forecasts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("failed_forecasts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("forecast_success_ratio", sa.Float),
    sa.Column("hosting_successes", sa.Integer, nullable=False, server_default="0"),
    sa.Column("hosting_failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("host_reliability_ratio", sa.Float),
    sa.Column("avg_hosting_latency_ms", sa.Float),
    sa.Column("avg_day1_score", sa.Float),
    sa.Column("avg_era5_score", sa.Float),
    sa.Column("avg_overall_score", sa.Float),
    sa.Column("best_overall_score", sa.Float),
    sa.Column("worst_overall_score", sa.Float),
    sa.Column("score_stddev", sa.Float),
    sa.Column("consecutive_successes", sa.Integer, nullable=False, server_default="0"),
    sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("common_errors", sa.JSON),
    sa.Column("last_active", UTCDateTime()),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("miner_uid", "miner_hotkey"),
)

round_scores = sa.Table(
    "weather_round_scores",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("weather_forecast_runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("miner_uid", sa.Integer, nullable=False),
    sa.Column("miner_hotkey", sa.String(64), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("overall_score", sa.Float),
    sa.Column("winner_bonus", sa.Float, nullable=False, server_default="0"),
    # The scoring profile (settings/profile.py) whose rules produced the row.
    sa.Column("scoring_profile", sa.String(16), nullable=False, server_default="reference"),
    sa.Column("computed_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("run_id", "miner_uid"),
)

weight_sets = sa.Table(
    "weather_weight_sets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("computed_for", UTCDateTime(), nullable=False),
    sa.Column("window_days", sa.Integer, nullable=False),
    sa.Column("publisher", sa.String(64), nullable=False),
    sa.Column("published_at", UTCDateTime()),
    sa.Column("details", sa.JSON),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("computed_for"),
)

weights = sa.Table(
    "weather_weights",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("weight_set_id", sa.Integer, sa.ForeignKey("weather_weight_sets.id", ondelete="CASCADE"), nullable=False),
    sa.Column("miner_uid", sa.Integer, nullable=False),
    sa.Column("mean_score", sa.Float, nullable=False),
    sa.Column("weight", sa.Float, nullable=False),
    sa.UniqueConstraint("weight_set_id", "miner_uid"),
)

subnet_snapshots = sa.Table(
    "weather_subnet_snapshots",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("weather_forecast_runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("summary", sa.JSON, nullable=False),
    sa.Column("taken_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("run_id"),
)


class SubmissionStatus(StrEnum):
    """Outcome of one attempt at setting a weight set on chain (``weather_weight_submissions``)."""

    DRY_RUN = "dry_run"  # recorded what would be sent; nothing sent
    RATE_LIMITED = "rate_limited"  # the subnet's weight rate limit has not elapsed yet
    SUCCEEDED = "succeeded"  # the extrinsic was included (or committed, under commit-reveal)
    FAILED = "failed"  # the chain refused it, or the call raised


# One row per attempt: the weights exactly as emitted (u16), the block decision and the outcome.
weight_submissions = sa.Table(
    "weather_weight_submissions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("computed_for", UTCDateTime(), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("netuid", sa.Integer, nullable=False),
    sa.Column("validator_hotkey", sa.String(64), nullable=False, server_default=""),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("block", sa.BigInteger),
    sa.Column("blocks_since_update", sa.BigInteger),
    sa.Column("rate_limit_blocks", sa.BigInteger),
    sa.Column("version_key", sa.BigInteger, nullable=False),
    sa.Column("uids", sa.JSON, nullable=False),
    sa.Column("weights_u16", sa.JSON, nullable=False),
    sa.Column("message", sa.Text),
    sa.Column("error_class", sa.String(32)),
    sa.Column("next_attempt_at", UTCDateTime()),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("computed_for", "attempt"),
    sa.CheckConstraint("mode IN ('dry_run', 'set', 'commit')", name="mode"),
    _enum_check("status", SubmissionStatus, "status"),
)


# -- score receipts (issue 15) ----------------------------------------------------------------------
# One signed receipt per Day1 score and per ERA5 lead score: the canonical JSON exactly as signed
# (text, so the signed bytes survive the database), its sha256, the sr25519 signature and the signer.
# Day1 is stored under lead_hours 0, as its aggregate row in ``weather_miner_scores``.
score_receipts = sa.Table(
    "weather_score_receipts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("weather_forecast_runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("miner_uid", sa.Integer, nullable=False),
    sa.Column("miner_hotkey", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("lead_hours", sa.Integer, nullable=False),
    sa.Column("scoring_profile", sa.String(16), nullable=False),
    sa.Column("receipt_json", sa.Text, nullable=False),
    sa.Column("receipt_sha256", sa.String(64), nullable=False),
    sa.Column("signature", sa.String(130), nullable=False),
    sa.Column("signer_ss58", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("run_id", "miner_uid", "kind", "lead_hours", "scoring_profile"),
    sa.CheckConstraint("kind IN ('day1', 'era5')", name="kind"),
    sa.Index(None, "receipt_sha256"),
)
