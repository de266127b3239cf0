"""Create the predictions table and its indexes.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("row_key", sa.String(64), nullable=False),
        sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("row_index", sa.Integer(), nullable=False),
        sa.Column("route", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(256), nullable=True),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("variant", sa.String(32), nullable=False),
        sa.Column("features", sa.JSON(), nullable=True),
        sa.Column("predicted_class", sa.String(256), nullable=True),
        sa.Column("probabilities", sa.JSON(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("caller", sa.String(128), nullable=True),
        sa.UniqueConstraint("row_key", name="uq_predictions_row_key"),
    )
    op.create_index("ix_predictions_logged_at", "predictions", ["logged_at"])
    op.create_index("ix_predictions_model_version_id", "predictions", ["model_name", "model_version", "id"])
    op.create_index("ix_predictions_request_id", "predictions", ["request_id"])


def downgrade() -> None:
    op.drop_table("predictions")
