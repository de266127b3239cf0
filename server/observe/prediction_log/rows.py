"""An answered request as table rows, made on the event loop the moment it is offered: plain tuples
in `COLUMNS` order, the JSON already encoded (orjson, once per row), so the writer thread only
hands finished rows to the database driver and holds Python's lock as little as possible."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from model_wrapper import Prediction
from server.observe.prediction_log.entry import Entry

COLUMNS = (
    "row_key",
    "logged_at",
    "request_id",
    "row_index",
    "route",
    "model_name",
    "model_version",
    "variant",
    "features",
    "predicted_class",
    "probabilities",
    "latency_ms",
    "caller",
)
Row = tuple[Any, ...]
Stamp = Callable[[float], Any]


def aware_utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def sqlite_text(seconds: float) -> str:
    """The text SQLAlchemy's SQLite DATETIME stores (and reads back): UTC, without a zone. The
    date and time of day are formatted once per second: most requests share their second."""
    whole = int(seconds)
    if _second[0] != whole:
        _second[1] = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%d %H:%M:%S")
        _second[0] = whole
    return f"{_second[1]}.{int((seconds - whole) * 1e6):06d}"


def rows_of(entry: Entry, key_prefix: str, stamp: Stamp) -> list[Row]:
    """One row per record of `entry`, keyed `key_prefix` + its index (the same on every retry)."""
    count = entry.rows
    logged_at = stamp(entry.logged_at)
    features = _fitting(_feature_texts(entry), count)
    classes, probabilities = _answer_texts(entry)
    classes, probabilities = _fitting(classes, count), _fitting(probabilities, count)
    model_name, version = _cut(entry.model_name, 256), _cut(entry.version, 64)
    caller = _cut(entry.caller, 128)
    return [
        (
            f"{key_prefix}{index}",
            logged_at,
            entry.request_id,
            index,
            entry.route,
            model_name,
            version,
            entry.variant,
            features[index] if features is not None else None,
            classes[index] if classes is not None else None,
            probabilities[index] if probabilities is not None else None,
            entry.latency_ms,
            caller,
        )
        for index in range(count)
    ]


def _json(value: Any) -> str:
    # Not-a-number probabilities (inputs far off the training range) become null.
    return orjson.dumps(value).decode()


def _feature_texts(entry: Entry) -> list[str] | None:
    if entry.features is None or entry.feature_names is None:
        return None
    names = entry.feature_names
    return [_json(dict(zip(names, row, strict=True))) for row in entry.features.tolist()]


def _answer_texts(entry: Entry) -> tuple[list[str | None] | None, list[str] | None]:
    answer = entry.answer
    if isinstance(answer, Prediction):
        labels = [_cut(str(label), 256) for label in answer.labels.tolist()]
        names = entry.class_names
        if names is None or len(names) != answer.probabilities.shape[1]:
            return labels, None
        return labels, [_json(dict(zip(names, row, strict=True))) for row in answer.probabilities.tolist()]
    if isinstance(answer, list):
        return [_cut(str(row), 256) for row in answer], None
    return None, None


def _fitting(rows: list[Any] | None, count: int) -> list[Any] | None:
    """Per-row values only when there is one per row (a model's output of another length is not
    matched to rows by guesswork)."""
    return rows if rows is not None and len(rows) == count else None


def _cut(text: str | None, length: int) -> str | None:
    """Text fitted to its column (a JWT subject, say, may be longer than any key name), and
    storable everywhere: NUL (which PostgreSQL's text refuses) becomes U+FFFD, and a lone surrogate
    (which no UTF-8 encoder takes) `?`."""
    if text is None:
        return None
    text = text[:length]
    if text.isascii() and "\x00" not in text:
        return text
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
