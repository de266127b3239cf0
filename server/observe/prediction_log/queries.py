"""Reading the prediction log back: one request's rows, recent rows for GET /predictions, and a
version's new rows for drift. Each query is served by one of the table's indexes."""

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
    """A version's rows logged after a known id, oldest first."""

    ids: list[int]
    logged_at: list[datetime]
    features: list[dict[str, Any] | None]
    predicted_class: list[str | None]


def rows_after(
    engine: Engine, model_name: str | None, version: str, after_id: int, *, since: datetime, limit: int
) -> NewRows:
    """Up to `limit` rows of one version with ids above `after_id`, logged at `since` or later."""
    name = (
        predictions.c.model_name.is_(None) if model_name is None else predictions.c.model_name == model_name
    )
    query = (
        sa.select(
            predictions.c.id, predictions.c.logged_at, predictions.c.features, predictions.c.predicted_class
        )
        .where(name, predictions.c.model_version == version, predictions.c.id > after_id)
        .where(predictions.c.logged_at >= since)
        .order_by(predictions.c.id)
        .limit(limit)
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
    column = predictions.c.model_name
    name = column.is_(None) if model_name is None else column == model_name
    query = (
        sa.select(predictions.c.id)
        .where(name, predictions.c.model_version == version)
        .order_by(predictions.c.id.desc())
        .offset(rows)
        .limit(1)
    )
    with engine.connect() as connection:
        found = connection.execute(query).scalar_one_or_none()
    return int(found or 0)


def newest_id(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(sa.select(sa.func.coalesce(sa.func.max(predictions.c.id), 0))).scalar_one()
        )
