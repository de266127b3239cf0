"""Opening the prediction log's database: one SQLAlchemy engine per process.

SQLite (`make run`) is shared by the workers of one server: write-ahead logging lets readers (drift,
GET /predictions) go on while a worker writes, and a busy timeout makes a writer wait for another's
transaction instead of failing. PostgreSQL connections are checked before use, so a restarted
database costs one failed batch (retried), not a broken pool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

SQLITE_BUSY_TIMEOUT_MS = 10_000
CONNECT_TIMEOUT_SECONDS = 5
STATEMENT_TIMEOUT_MS = 30_000


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def open_engine(url: str) -> Engine:
    """An engine for `url`; a SQLite file's folder is created when missing."""
    parsed = make_url(url)
    # hide_parameters: a failed statement's message never carries the features it was writing.
    options: dict[str, Any] = {
        "json_serializer": _json,
        "json_deserializer": orjson.loads,
        "hide_parameters": True,
    }
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, **options)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        options["connect_args"] = {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            # A statement, or a server gone without closing the connection, never holds the log's
            # writer (and so a shutdown) for long: the server ends the statement, keepalives and
            # the send timeout end the connection.
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": STATEMENT_TIMEOUT_MS,
        }
    return sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2, **options)


def _sqlite_pragmas(connection: Any, _: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def sqlite_file(engine: Engine) -> Path | None:
    """The SQLite file behind `engine`, or None for another database (or an in-memory one)."""
    if engine.url.get_backend_name() != "sqlite":
        return None
    database = engine.url.database
    return Path(database) if database and database != ":memory:" else None
