"""Reading the prediction log back: recent rows for GET /predictions, and a version's new rows for
drift. Drift's queries go through the `(model_name, model_version, id)` index; GET /predictions'
filters by `request_id` and `since` through theirs, and by version alone (no model name) walks the
table's ids backwards: an admin's debugging query, run on the drift thread, never the writer's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from server.observe.prediction_log.schema import predictions

LISTED = (
    predictions.c.id,
    predictions.c.logged_at,
    predictions.c.request_id,
    predictions.c.row_index,
    predictions.c.route,
    predictions.c.model_name,
    predictions.c.model_version,
    predictions.c.variant,
    predictions.c.features,
    predictions.c.predicted_class,
    predictions.c.probabilities,
    predictions.c.latency_ms,
    predictions.c.caller,
)


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    next_before: int | None  # pass as `before` for the next (older) page; None: no more


def recent(
    engine: Engine,
    *,
    since: datetime | None,
    version: str | None,
    request_id: str | None,
    before: int | None,
    limit: int,
) -> Page:
    """Rows newest first, filtered, `limit` at most, older than row id `before` when given."""
    query = sa.select(*LISTED).order_by(predictions.c.id.desc()).limit(limit + 1)
    if since is not None:
        query = query.where(predictions.c.logged_at >= since)
    if version is not None:
        query = query.where(predictions.c.model_version == version)
    if request_id is not None:
        query = query.where(predictions.c.request_id == request_id)
    if before is not None:
        query = query.where(predictions.c.id < before)
    with engine.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[-1]["id"] if more and rows else None)


@dataclass(frozen=True)
class NewRows:
    """Rows of the log, in id order."""

    ids: list[int]
    logged_at: list[datetime]
    features: list[dict[str, Any] | None]
    predicted_class: list[str | None]


def _version(model_name: str | None, version: str) -> tuple[sa.ColumnElement[bool], ...]:
    column = predictions.c.model_name
    name = column.is_(None) if model_name is None else column == model_name
    return (name, predictions.c.model_version == version)


def ids_after(engine: Engine, model_name: str | None, version: str, after_id: int, newest: int) -> list[int]:
    """The `newest` of one version's row ids above `after_id`, in order (from the index alone)."""
    query = (
        sa.select(predictions.c.id)
        .where(*_version(model_name, version), predictions.c.id > after_id)
        .order_by(predictions.c.id.desc())
        .limit(newest)
    )
    with engine.connect() as connection:
        ids = connection.execute(query).scalars().all()
    return ids[::-1]


def rows_with_ids(engine: Engine, ids: list[int]) -> NewRows:
    """The rows with these ids (drift reads them), in id order."""
    query = (
        sa.select(
            predictions.c.id, predictions.c.logged_at, predictions.c.features, predictions.c.predicted_class
        )
        .where(predictions.c.id.in_(ids))
        .order_by(predictions.c.id)
    )
    with engine.connect() as connection:
        result = connection.execute(query).all()
    return NewRows(
        [row[0] for row in result],
        [row[1] for row in result],
        [row[2] for row in result],
        [row[3] for row in result],
    )


def window_start(engine: Engine, model_name: str | None, version: str, rows: int) -> int:
    """The id just below one version's latest `rows` rows (0 when it has no more than that)."""
    query = (
        sa.select(predictions.c.id)
        .where(*_version(model_name, version))
        .order_by(predictions.c.id.desc())
        .offset(rows)
        .limit(1)
    )
    with engine.connect() as connection:
        found = connection.execute(query).scalar_one_or_none()
    return int(found or 0)
