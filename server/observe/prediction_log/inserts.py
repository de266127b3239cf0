"""Writing finished rows with as few driver calls as each database allows, because every call
into a driver lets go of Python's lock and must win it back from the event loop:

- PostgreSQL: `COPY ... FROM STDIN`, the rows streamed in a few large writes; a batch that meets
  a row already written (a retry after a commit whose acknowledgement was lost) is written again
  with `INSERT ... ON CONFLICT (row_key) DO NOTHING`;
- SQLite: multi-row `INSERT ... ON CONFLICT (row_key) DO NOTHING`, a few hundred rows a statement;
- anything else: SQLAlchemy's own executemany.

`retried` sorts failures: what the database may get over (unreachable, restarting, read-only after
a failover, its table gone) is tried again; a refusal of the data itself (DataError,
IntegrityError, a value the driver cannot encode) never will be.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from server.observe.prediction_log.rows import COLUMNS, Row, Stamp, aware_utc, sqlite_text
from server.observe.prediction_log.schema import predictions

SQLITE_ROWS_PER_STATEMENT = 500  # 13 parameters a row: far below SQLite's 32,766
_NAMES = ", ".join(COLUMNS)
_COPY = f"COPY predictions ({_NAMES}) FROM STDIN"
_UPSERT = (
    f"INSERT INTO predictions ({_NAMES}) VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
    "ON CONFLICT (row_key) DO NOTHING"
)


def stamp_for(engine: Engine) -> Stamp:
    """How rows carry their time for this database."""
    return sqlite_text if engine.url.get_backend_name() == "sqlite" else aware_utc


def insert(engine: Engine, rows: Sequence[Row]) -> None:
    """Write `rows` in one transaction (rows already there are skipped)."""
    backend = engine.url.get_backend_name()
    if backend not in ("postgresql", "sqlite"):
        with engine.begin() as connection:
            connection.execute(sa.insert(predictions), [dict(zip(COLUMNS, row, strict=True)) for row in rows])
        return
    raw = engine.raw_connection()
    try:
        if backend == "postgresql":
            _postgresql(raw, rows)
        else:
            _sqlite(raw, rows)
        raw.commit()
    except BaseException as error:
        if retried(error, dbapi_error(engine)):
            raw.invalidate()  # the connection may be broken: never handed out again
        else:
            raw.rollback()
        raise
    finally:
        raw.close()


def _postgresql(raw: object, rows: Sequence[Row]) -> None:
    cursor = raw.cursor()  # type: ignore[attr-defined]
    try:
        with cursor.copy(_COPY) as copy:
            for row in rows:
                copy.write_row(row)
    except Exception as error:
        if "UniqueViolation" not in {c.__name__ for c in type(error).__mro__}:
            raise
        raw.rollback()  # type: ignore[attr-defined]
        cursor.executemany(_UPSERT, rows)


def _sqlite(raw: object, rows: Sequence[Row]) -> None:
    cursor = raw.cursor()  # type: ignore[attr-defined]
    for start in range(0, len(rows), SQLITE_ROWS_PER_STATEMENT):
        chunk = rows[start : start + SQLITE_ROWS_PER_STATEMENT]
        cursor.execute(_sqlite_statement(len(chunk)), [value for row in chunk for value in row])


@cache
def _sqlite_statement(rows: int) -> str:
    values = "(" + ", ".join(["?"] * len(COLUMNS)) + ")"
    many = ", ".join([values] * rows)
    return f"INSERT INTO predictions ({_NAMES}) VALUES {many} ON CONFLICT (row_key) DO NOTHING"


def dbapi_error(engine: Engine) -> type[BaseException] | tuple[()]:
    module = getattr(engine.dialect, "loaded_dbapi", None)
    return getattr(module, "Error", ())


def retried(
    error: BaseException, dbapi_error: type[BaseException] | tuple[type[BaseException], ...] = ()
) -> bool:
    """Whether a later try may succeed: any error the database or its driver reports, but a
    refusal of the data; an error before the database is reached (a value the driver cannot
    encode) is a refusal of the data too."""
    names = {cls.__name__ for cls in type(error).__mro__}
    if names & {"DataError", "IntegrityError"}:
        return False
    return isinstance(error, sa.exc.DBAPIError) or (bool(dbapi_error) and isinstance(error, dbapi_error))


def may_lack_the_table(error: BaseException) -> bool:
    """A ProgrammingError (or SQLite's OperationalError naming it): the table may be gone."""
    names = {cls.__name__ for cls in type(error).__mro__}
    return "ProgrammingError" in names or "no such table" in str(error)
