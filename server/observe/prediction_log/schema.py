"""The `predictions` table: one row per predicted record.

The table is a public format: operators query it, and `registry_scripts.drift_report` reads it.
Change it only through a new Alembic migration (`migrations/versions/`), never in place.

Indexes serve the three readers: time ranges (retention, GET /predictions, the drift report) by
`logged_at`; one version's recent rows (drift) by `(model_name, model_version, id)`; one request
(debugging) by `request_id`. `row_key` is unique and made by the writer, so a batch retried after a
commit whose acknowledgement was lost is not written twice.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# SQLite numbers rows only through an INTEGER PRIMARY KEY; everywhere else a 64-bit key.
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

predictions = sa.Table(
    "predictions",
    metadata,
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
    sa.Index("ix_predictions_logged_at", "logged_at"),
    sa.Index("ix_predictions_model_version_id", "model_name", "model_version", "id"),
    sa.Index("ix_predictions_request_id", "request_id"),
)
