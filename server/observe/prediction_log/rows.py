"""Queued requests as table rows, made by the log's writer process a slice at a time: each row in
the form its database's insert takes (a tuple in `COLUMNS` order, or a line of PostgreSQL's COPY
text), its JSON already encoded.

Every run of requests with the same names has its features (and its probabilities) written by one
orjson call for the whole array and cut into one object per row by `_keyed_rows` (C), instead of a
dict and an orjson call per row; the other columns are lists assembled into rows by `zip`.

A slice holding a request that cannot become rows (a class name no JSON encoder takes, an array
of another width than its names) is made again one request at a time: that request's rows are
counted as refused and the others are written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import numpy as np
import orjson

from server.observe.prediction_log._keyed_rows import keyed_rows
from server.observe.prediction_log.entry import Entry, Queued

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
Row = Any  # a tuple in COLUMNS order, or one line of COPY text

_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def aware_utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def utc_text(seconds: float) -> str:
    """`YYYY-MM-DD HH:MM:SS.ffffff` in UTC: what SQLAlchemy's SQLite DATETIME stores (and reads
    back). The date and time of day are formatted once per second: most requests share theirs."""
    whole = int(seconds)
    if _second[0] != whole:
        _second[1] = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%d %H:%M:%S")
        _second[0] = whole
    return "%s.%06d" % (_second[1], (seconds - whole) * 1e6)  # noqa: UP031 - %d truncates like int(), and is faster


def _tuples(columns: Sequence[Sequence[Any]]) -> list[Row]:
    return list(zip(*columns, strict=True))


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_NULL = "\\N"


def _copy_text(value: str | None) -> str:
    """One field of PostgreSQL's COPY text format."""
    if value is None:
        return _COPY_NULL
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


def _copy_lines(columns: Sequence[Sequence[Any]]) -> list[Row]:
    """Lines of COPY text (without their newline). The row key and time need no escapes; the row
    index and latency are numbers; orjson's JSON holds no raw control character, so only its
    backslashes are escaped; the other text columns repeat a few values, each escaped once."""
    key, logged_at, request_id, row_index, route, name, version, variant, features, classes, probabilities = (
        columns[:11]
    )
    latency_ms, caller = columns[11:]
    fields = [
        key,
        logged_at,
        [_copy_text(value) for value in request_id],
        [str(value) for value in row_index],
        *(_repeated(column) for column in (route, name, version, variant)),
        _json_text(features),
        _repeated(classes),
        _json_text(probabilities),
        [repr(value) for value in latency_ms],
        _repeated(caller),
    ]
    return list(map("\t".join, zip(*fields, strict=True)))


def _repeated(column: Sequence[str | None]) -> list[str]:
    escaped: dict[str | None, str] = {}
    return [escaped[v] if v in escaped else escaped.setdefault(v, _copy_text(v)) for v in column]


def _json_text(column: Sequence[str | None]) -> list[str]:
    return [_COPY_NULL if v is None else v.replace("\\", "\\\\") if "\\" in v else v for v in column]


@dataclass(frozen=True)
class RowFormat:
    """How one database's insert takes its rows: the time's type and the rows' form."""

    stamp: Callable[[float], Any]
    assemble: Callable[[Sequence[Sequence[Any]]], list[Row]]


SQLITE_TUPLES = RowFormat(utc_text, _tuples)  # SQLAlchemy's DATETIME text, no zone
AWARE_TUPLES = RowFormat(aware_utc, _tuples)  # datetimes, for any driver
COPY_TEXT = RowFormat(lambda seconds: utc_text(seconds) + "+00", _copy_lines)  # timestamptz in UTC


def rows_of(batch: Sequence[Queued], key_prefix: str, form: RowFormat) -> tuple[list[Row], int]:
    """The rows of `batch`, in order, each keyed `key_prefix`, its request's sequence number and
    its index (the same keys on every retry); and how many rows were refused because their
    request could not become rows."""
    try:
        return _rows(batch, key_prefix, form), 0
    except Exception:  # noqa: BLE001 - one request at a time, to find the one that fails
        pass
    rows: list[Row] = []
    refused = 0
    for queued in batch:
        try:
            rows.extend(_rows((queued,), key_prefix, form))
        except Exception:  # noqa: BLE001 - counted by the caller, never raised into the writer
            refused += queued[1].rows
    return rows, refused


def _rows(batch: Sequence[Queued], key_prefix: str, form: RowFormat) -> list[Row]:
    entries = [entry for _, entry in batch]
    counts = [entry.rows for entry in entries]
    features = _keyed(entries, counts, _features)
    probabilities = _keyed(entries, counts, _probabilities)
    classes = _classes(entries, counts)
    # A slice's requests mostly share their source and caller: each is fitted to its columns once.
    fitted: dict[int, tuple[str | None, str | None, str]] = {}
    callers: dict[str | None, str | None] = {}
    sources = []
    for entry in entries:
        source = entry.source
        if (done := fitted.get(id(source))) is None:
            done = fitted[id(source)] = (
                _cut(source.model_name, 256),
                _cut(source.version, 64),
                source.variant,
            )
        sources.append(done)
    names, versions, variants = zip(*sources, strict=True) if sources else ((), (), ())
    caller = [
        callers[c] if c in callers else callers.setdefault(c, _cut(c, 128))
        for c in (e.caller for e in entries)
    ]
    stamp = form.stamp
    logged_at = [stamp(entry.logged_at) for entry in entries]
    request_id = [entry.request_id for entry in entries]
    route = [entry.route for entry in entries]
    latency_ms = [entry.latency_ms for entry in entries]
    if counts.count(1) == len(counts):  # one row per request: the usual case
        key = [f"{key_prefix}{sequence:012x}-0" for sequence, _ in batch]
        row_index = [0] * len(counts)

        def each(column: Sequence[Any]) -> Sequence[Any]:
            return column
    else:
        key = [
            f"{key_prefix}{sequence:012x}-{i}"
            for (sequence, _), n in zip(batch, counts, strict=True)
            for i in range(n)
        ]
        row_index = [i for n in counts for i in range(n)]

        def each(column: Sequence[Any]) -> Sequence[Any]:
            return [value for value, n in zip(column, counts, strict=True) for _ in range(n)]

    columns = [
        key,
        each(logged_at),
        each(request_id),
        row_index,
        each(route),
        each(names),
        each(versions),
        each(variants),
        features,
        classes,
        probabilities,
        each(latency_ms),
        each(caller),
    ]
    return form.assemble(columns)


Keyed = tuple[np.ndarray, tuple[str, ...]] | None  # a request's values (rows, names) and their names


def _features(entry: Entry, count: int) -> Keyed:
    names = entry.source.feature_names
    if entry.features is None or names is None:
        return None
    return entry.features, names


def _probabilities(entry: Entry, count: int) -> Keyed:
    answer, names = entry.answer, entry.source.class_names
    if answer is None or isinstance(answer, list) or names is None:
        return None
    values = answer.probabilities
    if values is None:
        return None
    # A model's output of another shape is not matched to rows or names by guesswork.
    if values.ndim != 2 or len(values) != count or values.shape[1] != len(names):
        return None
    return values, names


def _keyed(entries: list[Entry], counts: list[int], pick: Callable[[Entry, int], Keyed]) -> list[str | None]:
    """Per row of the batch, the JSON object of the values `pick` finds for its request (None
    where it finds none). Each run of requests with the same names is written as one array."""
    found = [pick(entry, count) for entry, count in zip(entries, counts, strict=True)]
    out: list[str | None] = []
    start = 0
    while start < len(found):
        item = found[start]
        if item is None:
            out.extend([None] * counts[start])
            start += 1
            continue
        names = item[1]
        stop = start + 1
        while (
            stop < len(found)
            and (other := found[stop]) is not None
            and (other[1] is names or other[1] == names)
        ):
            stop += 1
        arrays = [value[0] for value in found[start:stop]]  # type: ignore[index]
        values = np.concatenate(arrays) if len(arrays) > 1 else np.ascontiguousarray(arrays[0])
        if values.ndim != 2:
            raise ValueError("values must be rows")
        out.extend(keyed_rows(orjson.dumps(values, option=_NUMPY), _keys(names)))
        start = stop
    return out


@lru_cache(maxsize=64)
def _keys(names: tuple[str, ...]) -> tuple[bytes, ...]:
    """Each name's JSON text (raises for a name no JSON encoder takes, such as a lone surrogate)."""
    return tuple(orjson.dumps(name) for name in names)


def _classes(entries: list[Entry], counts: list[int]) -> list[str | None]:
    """Per row of the batch, its answer's class as text (None where the answer has no class per
    row: one per row or none is matched)."""
    out: list[str | None] = []
    texts: dict[str, str | None] = {}  # a batch's answers repeat a few classes: each fitted once
    for entry, count in zip(entries, counts, strict=True):
        answer = entry.answer
        if answer is None:
            labels: list[Any] = []
        elif isinstance(answer, list):
            labels = answer
        else:  # a classifier's answer (model_wrapper.Prediction, or slices.Answer)
            labels = answer.labels.tolist()
        if len(labels) != count:
            out.extend([None] * count)
            continue
        for label in labels:
            if type(label) is not str:  # 1, 1.0 and True are one key in a dict: never cached
                out.append(_cut(str(label), 256))
            elif (text := texts.get(label)) is not None:
                out.append(text)
            else:
                out.append(texts.setdefault(label, _cut(label, 256)))
    return out


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
