"""Alembic's environment for the prediction log: it runs on the connection `migrate` hands it
(`config.attributes["connection"]`), in one transaction, with its own version table so the log
may share a database with MLflow's tracking store (which keeps `alembic_version` for itself)."""

from __future__ import annotations

from alembic import context

from server.observe.prediction_log.schema import metadata

VERSION_TABLE = "prediction_log_alembic_version"

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
