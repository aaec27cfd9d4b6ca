"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23 08:47:41.610349
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import weather_dagster.db.types

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "miner_stats",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("miner_uid", sa.Integer(), nullable=False),
        sa.Column("miner_hotkey", sa.String(length=64), nullable=False),
        sa.Column("total_rounds", sa.Integer(), server_default="0", nullable=False),
        sa.Column("successful_forecasts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed_forecasts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("forecast_success_ratio", sa.Float(), nullable=True),
        sa.Column("hosting_successes", sa.Integer(), server_default="0", nullable=False),
        sa.Column("hosting_failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("host_reliability_ratio", sa.Float(), nullable=True),
        sa.Column("avg_hosting_latency_ms", sa.Float(), nullable=True),
        sa.Column("avg_day1_score", sa.Float(), nullable=True),
        sa.Column("avg_era5_score", sa.Float(), nullable=True),
        sa.Column("avg_overall_score", sa.Float(), nullable=True),
        sa.Column("best_overall_score", sa.Float(), nullable=True),
        sa.Column("worst_overall_score", sa.Float(), nullable=True),
        sa.Column("score_stddev", sa.Float(), nullable=True),
        sa.Column("consecutive_successes", sa.Integer(), server_default="0", nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("common_errors", sa.JSON(), nullable=True),
        sa.Column("last_active", weather_dagster.db.types.UTCDateTime(), nullable=True),
        sa.Column("updated_at", weather_dagster.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_miner_stats")),
        sa.UniqueConstraint("miner_uid", "miner_hotkey", name=op.f("uq_miner_stats_miner_uid_miner_hotkey")),
    )
    op.create_table(
        "miners",
        sa.Column("uid", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("hotkey", sa.String(length=64), nullable=False),
        sa.Column("coldkey", sa.String(length=64), server_default="", nullable=False),
        sa.Column("ip", sa.String(length=64), server_default="", nullable=False),
        sa.Column("port", sa.Integer(), server_default="0", nullable=False),
        sa.Column("stake", sa.Float(), server_default="0", nullable=False),
        sa.Column("updated_at", weather_dagster.db.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint("port >= 0 AND port <= 65535", name=op.f("ck_miners_port_range")),
        sa.CheckConstraint("uid >= 0 AND uid <= 255", name=op.f("ck_miners_uid_range")),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_miners")),
    )
    op.create_table(
        "weather_forecast_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("gfs_init_time_utc", weather_dagster.db.types.UTCDateTime(), nullable=False),
        sa.Column("previous_step_time_utc", weather_dagster.db.types.UTCDateTime(), nullable=False),
        sa.Column("run_initiation_time", weather_dagster.db.types.UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("test_mode", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("miner_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("completed_at", weather_dagster.db.types.UTCDateTime(), nullable=True),
        sa.Column("created_at", weather_dagster.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", weather_dagster.db.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('created', 'gfs_downloading', 'gfs_ready', 'querying_miners', 'scoring_day1', 'awaiting_era5', 'scoring_era5', 'completed', 'error', 'expired')",
            name=op.f("ck_weather_forecast_runs_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_weather_forecast_runs")),
        sa.UniqueConstraint("gfs_init_time_utc", name=op.f("uq_weather_forecast_runs_gfs_init_time_utc")),
    )
    op.create_table(
        "weather_weight_sets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("computed_for", weather_dagster.db.types.UTCDateTime(), nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("publisher", sa.String(length=64), nullable=False),
        sa.Column("published_at", weather_dagster.db.types.UTCDateTime(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("created_at", weather_dagster.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_weather_weight_sets")),
        sa.UniqueConstraint("computed_for", name=op.f("uq_weather_weight_sets_computed_for")),
    )
    op.create_table(
        "weather_forecast_stats",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("miner_uid", sa.Integer(), nullable=False),
        sa.Column("miner_hotkey", sa.String(length=64), nullable=False),
        sa.Column("forecast_init_time", weather_dagster.db.types.UTCDateTime(), nullable=False),
        sa.Column("forecast_status", sa.String(length=32), nullable=False),
        sa.Column("current_forecast_stage", sa.String(length=64), nullable=True),
        sa.Column("current_forecast_status", sa.String(length=32), nullable=True),
        sa.Column("last_error_message", sa.Text(), nullable=True),
        sa.Column("retries_remaining", sa.Integer(), nullable=True),
        sa.Column("next_scheduled_retry", weather_dagster.db.types.UTCDateTime(), nullable=True),
        sa.Column("forecast_score_initial", sa.Float(), nullable=True),
        sa.Column("era5_combined_score", sa.Float(), nullable=True),
        sa.Column("era5_completeness", sa.Float(), nullable=True),
        sa.Column("overall_forecast_score", sa.Float(), nullable=True),
        sa.Column("avg_rmse", sa.Float(), nullable=True),
        sa.Column("avg_acc", sa.Float(), nullable=True),
        sa.Column("avg_skill_score", sa.Float(), nullable=True),
        sa.Column("hosting_status", sa.String(length=32), nullable=True),
        sa.Column("hosting_latency_ms", sa.Float(), nullable=True),
        sa.Column("forecast_inference_time", sa.Float(), nullable=True),
        sa.Column("miner_rank", sa.Integer(), nullable=True),
        sa.Column("created_at", weather_dagster.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", weather_dagster.db.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "current_forecast_status IS NULL OR current_forecast_status IN ('pending', 'in_progress', 'succeeded', 'failed', 'retry_scheduled', 'waiting_for_truth')",
            name=op.f("ck_weather_forecast_stats_current_forecast_status"),
        ),
        sa.CheckConstraint(
            "forecast_status IN ('created', 'fetch_initiated', 'inference_running', 'forecast_ready', 'day1_scoring', 'day1_scored', 'era5_scoring', 'era5_scored', 'failed', 'cancelled')",
            name=op.f("ck_weather_forecast_stats_forecast_status"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["weather_forecast_runs.id"],
            name=op.f("fk_weather_forecast_stats_run_id_weather_forecast_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_weather_forecast_stats")),
        sa.UniqueConstraint(
            "run_id", "miner_uid", "miner_hotkey", name=op.f("uq_weather_forecast_stats_run_id_miner_uid_miner_hotkey")
        ),
    )
    op.create_table(
        "weather_forecast_steps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("miner_uid", sa.Integer(), nullable=False),
        sa.Column("miner_hotkey", sa.String(length=64), nullable=False),
        sa.Column("step_name", sa.String(length=32), nullable=False),
        sa.Column("substep", sa.String(length=64), server_default="", nullable=False),
        sa.Column("lead_hours", sa.Integer(), server_default="0", nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("started_at", weather_dagster.db.types.UTCDateTime(), nullable=True),
        sa.Column("completed_at", weather_dagster.db.types.UTCDateTime(), nullable=True),
        sa.Column("retry_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_retry_time", weather_dagster.db.types.UTCDateTime(), nullable=True),
        sa.Column("lease_expires_at", weather_dagster.db.types.UTCDateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("error_json", sa.JSON(), nullable=True),
        sa.Column("context", sa.JSON(), nullable=True),
        sa.Column("dagster_run_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", weather_dagster.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", weather_dagster.db.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'in_progress', 'succeeded', 'failed', 'retry_scheduled', 'waiting_for_truth')",
            name=op.f("ck_weather_forecast_steps_status"),
        ),
        sa.CheckConstraint("miner_uid >= -1 AND miner_uid <= 255", name=op.f("ck_weather_forecast_steps_uid_range")),
        sa.CheckConstraint("retry_count >= 0", name=op.f("ck_weather_forecast_steps_retry_count_non_negative")),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["weather_forecast_runs.id"],
            name=op.f("fk_weather_forecast_steps_run_id_weather_forecast_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_weather_forecast_steps")),
        sa.UniqueConstraint(
            "run_id",
            "miner_uid",
            "miner_hotkey",
            "step_name",
            "substep",
            "lead_hours",
            name=op.f("uq_weather_forecast_steps_run_id_miner_uid_miner_hotkey_step_name_substep_lead_hours"),
        ),
    )
    with op.batch_alter_table("weather_forecast_steps", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_weather_forecast_steps_run_id_miner_uid_step_name"),
            ["run_id", "miner_uid", "step_name"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_weather_forecast_steps_status_next_retry_time"), ["status", "next_retry_time"], unique=False
        )

    op.create_table(
        "weather_miner_responses",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("miner_uid", sa.Integer(), nullable=False),
        sa.Column("miner_hotkey", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=128), nullable=True),
        sa.Column("zarr_store_url", sa.Text(), nullable=True),
        sa.Column("verification_hash_claimed", sa.String(length=64), nullable=True),
        sa.Column("frozen_manifest", sa.JSON(), nullable=True),
        sa.Column("manifest_frozen_at", weather_dagster.db.types.UTCDateTime(), nullable=True),
        sa.Column("response_time", weather_dagster.db.types.UTCDateTime(), nullable=True),
        sa.Column("inference_started_at", weather_dagster.db.types.UTCDateTime(), nullable=True),
        sa.Column("inference_completed_at", weather_dagster.db.types.UTCDateTime(), nullable=True),
        sa.Column("day1_scored_at", weather_dagster.db.types.UTCDateTime(), nullable=True),
        sa.Column("era5_scored_at", weather_dagster.db.types.UTCDateTime(), nullable=True),
        sa.Column("retry_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_retry_time", weather_dagster.db.types.UTCDateTime(), nullable=True),
        sa.Column("failure_category", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", weather_dagster.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", weather_dagster.db.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('created', 'fetch_initiated', 'inference_running', 'forecast_ready', 'day1_scoring', 'day1_scored', 'era5_scoring', 'era5_scored', 'failed', 'cancelled')",
            name=op.f("ck_weather_miner_responses_status"),
        ),
        sa.CheckConstraint("miner_uid >= 0 AND miner_uid <= 255", name=op.f("ck_weather_miner_responses_uid_range")),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["weather_forecast_runs.id"],
            name=op.f("fk_weather_miner_responses_run_id_weather_forecast_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_weather_miner_responses")),
        sa.UniqueConstraint(
            "run_id", "miner_uid", "miner_hotkey", name=op.f("uq_weather_miner_responses_run_id_miner_uid_miner_hotkey")
        ),
    )
    op.create_table(
        "weather_round_scores",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("miner_uid", sa.Integer(), nullable=False),
        sa.Column("miner_hotkey", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("overall_score", sa.Float(), nullable=True),
        sa.Column("winner_bonus", sa.Float(), server_default="0", nullable=False),
        sa.Column("computed_at", weather_dagster.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["weather_forecast_runs.id"],
            name=op.f("fk_weather_round_scores_run_id_weather_forecast_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_weather_round_scores")),
        sa.UniqueConstraint("run_id", "miner_uid", name=op.f("uq_weather_round_scores_run_id_miner_uid")),
    )
    op.create_table(
        "weather_subnet_snapshots",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("taken_at", weather_dagster.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["weather_forecast_runs.id"],
            name=op.f("fk_weather_subnet_snapshots_run_id_weather_forecast_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_weather_subnet_snapshots")),
        sa.UniqueConstraint("run_id", name=op.f("uq_weather_subnet_snapshots_run_id")),
    )
    op.create_table(
        "weather_weights",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("weight_set_id", sa.Integer(), nullable=False),
        sa.Column("miner_uid", sa.Integer(), nullable=False),
        sa.Column("mean_score", sa.Float(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["weight_set_id"],
            ["weather_weight_sets.id"],
            name=op.f("fk_weather_weights_weight_set_id_weather_weight_sets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_weather_weights")),
        sa.UniqueConstraint("weight_set_id", "miner_uid", name=op.f("uq_weather_weights_weight_set_id_miner_uid")),
    )
    op.create_table(
        "weather_forecast_component_scores",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("response_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("miner_uid", sa.Integer(), nullable=False),
        sa.Column("miner_hotkey", sa.String(length=64), nullable=False),
        sa.Column("score_type", sa.String(length=32), nullable=False),
        sa.Column("lead_hours", sa.Integer(), nullable=False),
        sa.Column("variable", sa.String(length=32), nullable=False),
        sa.Column("pressure_level", sa.Integer(), server_default="0", nullable=False),
        sa.Column("valid_time_utc", weather_dagster.db.types.UTCDateTime(), nullable=True),
        sa.Column("rmse", sa.Float(), nullable=True),
        sa.Column("mse", sa.Float(), nullable=True),
        sa.Column("acc", sa.Float(), nullable=True),
        sa.Column("skill_score", sa.Float(), nullable=True),
        sa.Column("bias", sa.Float(), nullable=True),
        sa.Column("mae", sa.Float(), nullable=True),
        sa.Column("pattern_correlation", sa.Float(), nullable=True),
        sa.Column("clone_distance", sa.Float(), nullable=True),
        sa.Column("clone_penalty", sa.Float(), nullable=True),
        sa.Column("checks_passed", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=True),
        sa.Column("variable_weight", sa.Float(), nullable=True),
        sa.Column("calculation_duration_ms", sa.Float(), nullable=True),
        sa.Column("calculation_time", weather_dagster.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["response_id"],
            ["weather_miner_responses.id"],
            name=op.f("fk_weather_forecast_component_scores_response_id_weather_miner_responses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_weather_forecast_component_scores")),
        sa.UniqueConstraint(
            "response_id",
            "score_type",
            "lead_hours",
            "variable",
            "pressure_level",
            name=op.f("uq_weather_forecast_component_scores_response_id_score_type_lead_hours_variable_pressure_level"),
        ),
    )
    with op.batch_alter_table("weather_forecast_component_scores", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_weather_forecast_component_scores_run_id_miner_uid"), ["run_id", "miner_uid"], unique=False
        )

    op.create_table(
        "weather_miner_scores",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("response_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("miner_uid", sa.Integer(), nullable=False),
        sa.Column("miner_hotkey", sa.String(length=64), nullable=False),
        sa.Column("score_type", sa.String(length=32), nullable=False),
        sa.Column("lead_hours", sa.Integer(), server_default="0", nullable=False),
        sa.Column("variable", sa.String(length=32), server_default="", nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("valid_time_utc", weather_dagster.db.types.UTCDateTime(), nullable=True),
        sa.Column("calculation_time", weather_dagster.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["response_id"],
            ["weather_miner_responses.id"],
            name=op.f("fk_weather_miner_scores_response_id_weather_miner_responses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_weather_miner_scores")),
        sa.UniqueConstraint(
            "response_id",
            "score_type",
            "lead_hours",
            "variable",
            name=op.f("uq_weather_miner_scores_response_id_score_type_lead_hours_variable"),
        ),
    )
    with op.batch_alter_table("weather_miner_scores", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_weather_miner_scores_run_id_miner_uid"), ["run_id", "miner_uid"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("weather_miner_scores", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_weather_miner_scores_run_id_miner_uid"))

    op.drop_table("weather_miner_scores")
    with op.batch_alter_table("weather_forecast_component_scores", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_weather_forecast_component_scores_run_id_miner_uid"))

    op.drop_table("weather_forecast_component_scores")
    op.drop_table("weather_weights")
    op.drop_table("weather_subnet_snapshots")
    op.drop_table("weather_round_scores")
    op.drop_table("weather_miner_responses")
    with op.batch_alter_table("weather_forecast_steps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_weather_forecast_steps_status_next_retry_time"))
        batch_op.drop_index(batch_op.f("ix_weather_forecast_steps_run_id_miner_uid_step_name"))

    op.drop_table("weather_forecast_steps")
    op.drop_table("weather_forecast_stats")
    op.drop_table("weather_weight_sets")
    op.drop_table("weather_forecast_runs")
    op.drop_table("miners")
    op.drop_table("miner_stats")
