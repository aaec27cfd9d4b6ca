"""scoring profile recorded with every score

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 14:30:00

Validators that score with a different profile disagree on every number; recording the profile
beside each score lets an operator (and a later replay) tell which rules produced it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "weather_miner_scores",
    "weather_forecast_component_scores",
    "weather_forecast_stats",
    "weather_round_scores",
)


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("scoring_profile", sa.String(length=16), server_default="reference", nullable=False)
            )


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("scoring_profile")
