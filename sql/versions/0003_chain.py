"""chain: validator permit on miners, one row per on-chain weight submission attempt

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 15:00:00

The chain adapters (weather_dagster/chain/) read the validator permit with the metagraph (active
validators get no weight, as in the reference) and record every attempt at setting weights on chain,
dry runs included, with the weights exactly as emitted and the extrinsic's outcome.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import weather_dagster.db.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("miners", schema=None) as batch_op:
        batch_op.add_column(sa.Column("validator_permit", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        "weather_weight_submissions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("computed_for", weather_dagster.db.types.UTCDateTime(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("netuid", sa.Integer(), nullable=False),
        sa.Column("validator_hotkey", sa.String(length=64), server_default="", nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("block", sa.BigInteger(), nullable=True),
        sa.Column("blocks_since_update", sa.BigInteger(), nullable=True),
        sa.Column("rate_limit_blocks", sa.BigInteger(), nullable=True),
        sa.Column("version_key", sa.BigInteger(), nullable=False),
        sa.Column("uids", sa.JSON(), nullable=False),
        sa.Column("weights_u16", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("error_class", sa.String(length=32), nullable=True),
        sa.Column("next_attempt_at", weather_dagster.db.types.UTCDateTime(), nullable=True),
        sa.Column("created_at", weather_dagster.db.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint("mode IN ('dry_run', 'set', 'commit')", name=op.f("ck_weather_weight_submissions_mode")),
        sa.CheckConstraint(
            "status IN ('dry_run', 'rate_limited', 'succeeded', 'failed')",
            name=op.f("ck_weather_weight_submissions_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_weather_weight_submissions")),
        sa.UniqueConstraint("computed_for", "attempt", name=op.f("uq_weather_weight_submissions_computed_for_attempt")),
    )


def downgrade() -> None:
    op.drop_table("weather_weight_submissions")
    with op.batch_alter_table("miners", schema=None) as batch_op:
        batch_op.drop_column("validator_permit")
