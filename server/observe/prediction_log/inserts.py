"""Writing finished rows (in the log's writer process) with as few driver calls and round trips
as each database allows:

- PostgreSQL: `COPY ... FROM STDIN` of rows made as COPY text (`rows.COPY_TEXT`), in one write;
  a batch that meets a row already written (a retry after a commit whose acknowledgement was lost)
  is written again with `INSERT ... ON CONFLICT (row_key) DO NOTHING`;
- SQLite: multi-row `INSERT ... ON CONFLICT (row_key) DO NOTHING`, a few hundred rows a statement;
- anything else: SQLAlchemy's own executemany.

`retried` sorts failures: what the database may get over (unreachable, restarting, read-only after
a failover, its table gone) is tried again; a refusal of the data itself (DataError,
IntegrityError, a value the driver cannot encode) never will be.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from server.observe.prediction_log.rows import AWARE_TUPLES, COLUMNS, COPY_TEXT, SQLITE_TUPLES, Row, RowFormat
from server.observe.prediction_log.schema import predictions

SQLITE_ROWS_PER_STATEMENT = 512  # 13 parameters a row: far below SQLite's 32,766
_NAMES = ", ".join(COLUMNS)
_COPY = f"COPY predictions ({_NAMES}) FROM STDIN"
_UPSERT = (
    f"INSERT INTO predictions ({_NAMES}) VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
    "ON CONFLICT (row_key) DO NOTHING"
)


def row_format_for(engine: Engine) -> RowFormat:
    """The form `insert` takes this database's rows in."""
    backend = engine.url.get_backend_name()
    return {"sqlite": SQLITE_TUPLES, "postgresql": COPY_TEXT}.get(backend, AWARE_TUPLES)


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
            copy.write("\n".join(rows) + "\n")
    except Exception as error:
        if "UniqueViolation" not in {c.__name__ for c in type(error).__mro__}:
            raise
        raw.rollback()  # type: ignore[attr-defined]
        cursor.executemany(_UPSERT, [copy_fields(row) for row in rows])


_COPY_FIELD_ESCAPE = re.compile(r"\\(.)")
_COPY_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def copy_fields(line: str) -> tuple[str | None, ...]:
    """A line of COPY text back as its fields (text; PostgreSQL casts them to the columns' types)."""
    return tuple(
        None if field == "\\N" else _COPY_FIELD_ESCAPE.sub(lambda m: _COPY_UNESCAPES.get(m[1], m[1]), field)
        for field in line.split("\t")
    )


def _sqlite(raw: object, rows: Sequence[Row]) -> None:
    cursor = raw.cursor()  # type: ignore[attr-defined]
    start = 0
    for size in _sqlite_chunks(len(rows)):
        chunk = rows[start : start + size]
        cursor.execute(_sqlite_statement(size), [value for row in chunk for value in row])
        start += size


def _sqlite_chunks(rows: int) -> list[int]:
    """`rows` as statements of SQLITE_ROWS_PER_STATEMENT rows, then of powers of two: a few
    statements' texts, each parsed once per connection and then taken from its statement cache
    (a statement of every batch's odd size would be parsed anew each time)."""
    sizes = [SQLITE_ROWS_PER_STATEMENT] * (rows // SQLITE_ROWS_PER_STATEMENT)
    rest = rows % SQLITE_ROWS_PER_STATEMENT
    power = 1 << (SQLITE_ROWS_PER_STATEMENT.bit_length() - 1)
    while rest:
        if rest >= power:
            sizes.append(power)
            rest -= power
        power >>= 1
    return sizes


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


def one_line(error: BaseException) -> str:
    """An error as one short line for the server log (statements' parameters are hidden by the
    engine, so no row's values are in it)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300]}" if text else type(error).__name__
