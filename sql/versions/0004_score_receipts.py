"""score receipts: one signed, canonical receipt per Day1 and ERA5-lead score

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 18:45:00

A miner or another validator can check a score only against what it was computed from: each receipt
holds the hashes of every reference field as read, the frozen manifest hash, the scoring profile and
settings, the component metrics and the score, signed with the validator's hotkey (issue 15).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import weather_dagster.db.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "weather_score_receipts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("miner_uid", sa.Integer(), nullable=False),
        sa.Column("miner_hotkey", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("lead_hours", sa.Integer(), nullable=False),
        sa.Column("scoring_profile", sa.String(length=16), nullable=False),
        sa.Column("receipt_json", sa.Text(), nullable=False),
        sa.Column("receipt_sha256", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=130), nullable=False),
        sa.Column("signer_ss58", sa.String(length=64), nullable=False),
        sa.Column("created_at", weather_dagster.db.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint("kind IN ('day1', 'era5')", name=op.f("ck_weather_score_receipts_kind")),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["weather_forecast_runs.id"],
            name=op.f("fk_weather_score_receipts_run_id_weather_forecast_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_weather_score_receipts")),
        sa.UniqueConstraint(
            "run_id",
            "miner_uid",
            "kind",
            "lead_hours",
            "scoring_profile",
            name=op.f("uq_weather_score_receipts_run_id_miner_uid_kind_lead_hours_scoring_profile"),
        ),
    )
    with op.batch_alter_table("weather_score_receipts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_weather_score_receipts_receipt_sha256"), ["receipt_sha256"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("weather_score_receipts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_weather_score_receipts_receipt_sha256"))
    op.drop_table("weather_score_receipts")
