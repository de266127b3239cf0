"""Bringing the prediction log's schema to this server's version with Alembic, or refusing to
start when it is not there and migrating is off (PREDICTION_LOG_MIGRATE=false, for teams that
migrate as a deployment step: `python -m server migrate`).

Several workers and replicas start at once, so migrating is serialised: a PostgreSQL advisory lock
held for the migration, or, for a SQLite file (one machine), a lock file beside it. The second to
get the lock finds the schema current and does nothing.

Migrations only ever add (nullable columns, indexes, tables), so a server older than the schema
still writes its rows: it starts against a database at a revision it does not know, with a
warning, and rolling a deployment back never needs the schema rolled back.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from server.observe.prediction_log.database import sqlite_file

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "prediction_log_alembic_version"
# pg_advisory_lock's key: any constant of this application's own ("rs-plog" in ASCII).
ADVISORY_LOCK_KEY = 0x72732D706C6F67


class SchemaNotCurrent(RuntimeError):
    """The database's schema is not the one this server writes, and migrating is off."""


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the prediction log has no migrations"
    return head


def _known(revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(_config()).get_revision(revision) is not None
    except Exception:  # noqa: BLE001 - alembic raises its own errors for a revision it does not have
        return False


def current_revision(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def prepare(engine: Engine, *, migrate: bool) -> str:
    """Make sure the schema is current: migrate it (under the lock) or raise `SchemaNotCurrent`
    with what to do. Returns the revision."""
    head = head_revision()
    with engine.connect() as connection:
        found = current_revision(connection)
    if found is not None and found != head and not _known(found):
        logger.warning(
            "the prediction log's database is at schema revision %s, newer than this server's %s; "
            "writing to it as it is (migrations only add to the schema)",
            found,
            head,
        )
        return found
    if not migrate:
        if found != head:
            raise SchemaNotCurrent(
                f"the prediction log's database is at schema revision {found or 'none (empty)'}, "
                f"this server writes revision {head}, and PREDICTION_LOG_MIGRATE is false: run "
                "`python -m server migrate`, or set PREDICTION_LOG_MIGRATE=true"
            )
        return head
    upgrade(engine)
    return head


def upgrade(engine: Engine) -> None:
    """Migrate to the newest revision, one migrator at a time."""
    with _migration_lock(engine), engine.begin() as connection:
        if engine.url.get_backend_name() == "postgresql":
            connection.exec_driver_sql("SET LOCAL statement_timeout = 0")  # a migration takes what it takes
        command.upgrade(_config(connection), "head")


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    database_file = sqlite_file(engine)
    if database_file is not None:
        lock_path = database_file.with_name(database_file.name + ".migrate-lock")
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return
    if engine.url.get_backend_name() != "postgresql":
        yield  # another database: its own DDL locking is all there is
        return
    with engine.connect() as connection:
        connection.exec_driver_sql(f"SELECT pg_advisory_lock({ADVISORY_LOCK_KEY})")
        connection.commit()
        try:
            yield
        finally:
            connection.exec_driver_sql(f"SELECT pg_advisory_unlock({ADVISORY_LOCK_KEY})")
            connection.commit()
