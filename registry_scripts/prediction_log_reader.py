"""Reading the prediction log's `predictions` table for reports: a window of rows fixed when the
report starts, read one version at a time in pages of PAGE_ROWS rows, so a long window costs time,
not memory.

The table is read as a public format: the columns read are described here, not imported from the
server (`tests/registry_scripts/test_drift_report.py` reads rows the server's own schema wrote).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

PAGE_ROWS = 10_000

# The columns of the prediction log's `predictions` table that the report reads.
PREDICTIONS = sa.table(
    "predictions",
    sa.column("id", sa.BigInteger()),
    sa.column("logged_at", sa.DateTime(timezone=True)),
    sa.column("model_name", sa.String()),
    sa.column("model_version", sa.String()),
    sa.column("features", sa.JSON()),
    sa.column("predicted_class", sa.String()),
)
COLUMNS = PREDICTIONS.c

Page = Sequence[tuple[Any, str | None]]  # (features document, predicted class) per row


def sqlalchemy_url(url: str) -> str:
    """A bare `postgresql://` means psycopg (3), the driver installed here, as the server reads it."""
    url = url.strip()
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url.removeprefix(bare)
    return url


@dataclass(frozen=True)
class Window:
    """Rows logged at `start` or later with ids in (`after`, `last`]: fixed when the report starts,
    so a second pass reads the same rows."""

    start: datetime
    end: datetime
    after: int
    last: int


def open_window(engine: Engine, since: timedelta, now: datetime) -> Window:
    start = now - since
    with engine.connect() as connection:
        last = connection.execute(sa.select(sa.func.max(COLUMNS.id))).scalar_one_or_none() or 0
        first = connection.execute(
            sa.select(sa.func.min(COLUMNS.id)).where(COLUMNS.logged_at >= start)
        ).scalar_one_or_none()
    return Window(start, now, int(first) - 1 if first is not None else int(last), int(last))


def _in_window(window: Window) -> tuple[sa.ColumnElement[bool], ...]:
    return (COLUMNS.id > window.after, COLUMNS.id <= window.last, COLUMNS.logged_at >= window.start)


def logged_versions(engine: Engine, model_name: str, window: Window) -> list[str]:
    """The versions of `model_name` with rows in the window, in version order."""
    query = (
        sa.select(COLUMNS.model_version)
        .distinct()
        .where(COLUMNS.model_name == model_name, COLUMNS.model_version.is_not(None), *_in_window(window))
    )
    with engine.connect() as connection:
        found = [str(v) for v in connection.execute(query).scalars()]
    return sorted(found, key=lambda v: (not v.isdigit(), int(v) if v.isdigit() else 0, v))


def pages(engine: Engine, model_name: str, version: str, window: Window) -> Iterator[Page]:
    """One version's rows in the window, PAGE_ROWS at a time, in id order."""
    after = window.after
    while True:
        query = (
            sa.select(COLUMNS.id, COLUMNS.features, COLUMNS.predicted_class)
            .where(COLUMNS.model_name == model_name, COLUMNS.model_version == version)
            .where(*_in_window(window), COLUMNS.id > after)
            .order_by(COLUMNS.id)
            .limit(PAGE_ROWS)
        )
        with engine.connect() as connection:
            rows = connection.execute(query).all()
        if rows:
            yield [(row[1], row[2]) for row in rows]
            after = rows[-1][0]
        if len(rows) < PAGE_ROWS:
            return


def number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else np.nan


def feature_matrix(page: Page, names: Sequence[str]) -> np.ndarray:
    """Features by row and name; NaN where a row lacks one (or all: no features object)."""
    return np.array(
        [
            [number(doc.get(n)) for n in names] if isinstance(doc, dict) else [np.nan] * len(names)
            for doc, _ in page
        ],
        dtype=np.float64,
    ).reshape(len(page), len(names))
