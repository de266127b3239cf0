"""simdjson's reading of plain `dataframe_split` bodies: what it accepts, Python's `json` reads the same.

Whatever `PlainSplitReader` declines goes on to the other readers (MLflow's parsers last), so a
wrong None only costs time; a wrong array would be a wrong answer. Hence: every array it returns
equals, bit for bit, the one Python's `json` and numpy make of the same body.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.codecs.plain_split import KEY_WINDOW_BYTES, REUSED_PARSER_MAX_BYTES, PlainSplitReader
from tests.server.json_samples import NUMBER_TEXTS, ODD_VALUES

READ = PlainSplitReader()
COLUMNS = ["a", "b", "c"]


def _body(data: object, columns: object = COLUMNS, **extra: object) -> bytes:
    return json.dumps({"dataframe_split": {"columns": columns, "data": data}, **extra}).encode()


def _as_python_reads_it(body: bytes) -> tuple[list[str], np.ndarray] | None:
    """The same body through `json`: a plain split's columns and rows, or None when not plain."""
    document = json.loads(body)
    split = document.get("dataframe_split") if isinstance(document, dict) else None
    if set(document) - {"dataframe_split", "params"} or not isinstance(split, dict):
        return None
    columns, data = split.get("columns"), split.get("data")
    if set(split) != {"columns", "data"} or not isinstance(columns, list) or not isinstance(data, list):
        return None
    plain = (
        data
        and columns
        and all(type(name) is str for name in columns)
        and all(isinstance(row, list) and len(row) == len(columns) for row in data)
        and all(type(value) in (int, float) for row in data for value in row)
    )
    if not plain:
        return None
    rows = np.array(data, dtype=np.float64)
    return (columns, rows) if np.isfinite(rows).all() else None


def _same(read: tuple[list[str], np.ndarray], expected: tuple[list[str], np.ndarray]) -> bool:
    return (
        read[0] == expected[0]
        and read[1].shape == expected[1].shape
        and (read[1].tobytes() == expected[1].tobytes())
    )


def test_a_dataset_sized_body_reads_as_pythons_json_reads_it(dataset: Any) -> None:
    columns = list(dataset.columns)
    body = _body(dataset.to_numpy().tolist(), columns)

    read = READ(body)

    assert read is not None
    assert _same(read, (columns, dataset.to_numpy(dtype=np.float64)))


def test_a_body_too_large_for_the_shared_parser_reads_the_same() -> None:
    rows = np.random.default_rng(0).normal(size=(6000, 30)).tolist()
    body = _body(rows, [f"c{i}" for i in range(30)])
    assert len(body) > REUSED_PARSER_MAX_BYTES

    read = READ(body)

    assert read is not None
    assert read[1].tobytes() == np.array(rows, dtype=np.float64).tobytes()
    assert READ(_body([[1.0, 2.0, 3.0]])) is not None  # the shared parser is still free


@pytest.mark.parametrize("text", [*NUMBER_TEXTS, "18446744073709551615"])
def test_numbers_read_as_pythons_json_reads_them(text: str) -> None:
    body = b'{"dataframe_split": {"columns": ["a"], "data": [[%s]]}}' % text.encode()

    read = READ(body)

    assert read is not None
    expected = _as_python_reads_it(body)
    assert expected is not None
    assert _same(read, expected)


NOT_PLAIN = {
    "no split": b'{"dataframe_records": [{"a": 1}]}',
    "a nested value": _body([[[1.0], 2.0, 3.0]]),
    "a nested row beside a number": _body([[1.0, [2.0], 3.0], 4.0]),
    "ragged rows of the right total": _body([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0]]),
    "a short row": _body([[1.0, 2.0]]),
    "a boolean": _body([[1.0, True, 3.0]]),
    "a null": _body([[1.0, None, 3.0]]),
    "a string": _body([[1.0, "2", 3.0]]),
    "an object": _body([[1.0, {"x": 2}, 3.0]]),
    "an integer beyond 64 bits": _body([[1.0, 2**70, 3.0]]),
    "beyond a double": b'{"dataframe_split": {"columns": ["a"], "data": [[1e400]]}}',
    "a number for a column name": _body([[1.0, 2.0, 3.0]], ["a", 2, "c"]),
    "no rows": _body([]),
    "no columns": _body([[]], []),
    "an index": json.dumps({"dataframe_split": {"columns": ["a"], "data": [[1]], "index": [0]}}).encode(),
    "an unknown top key": _body([[1.0, 2.0, 3.0]], meta=1),
    "a params array": _body([[1.0, 2.0, 3.0]], params={"k": [1]}),
    "a repeated top key": b'{"dataframe_split": {"columns": ["a"], "data": [[1]]}, '
    b'"dataframe_split": {"columns": ["a"], "data": [[2]]}}',
    "a repeated data key": b'{"dataframe_split": {"columns": ["a"], "data": [[1]], "data": [[2]]}}',
    "split as a list": b'{"dataframe_split": [[1, 2]]}',
    "data as an object": b'{"dataframe_split": {"columns": ["a"], "data": {"a": 1}}}',
    "a top-level list": b'[{"dataframe_split": 1}]',
    "not json": b'{"dataframe_split": ',
    "invalid utf-8": b'{"dataframe_split": {"columns": ["\xff"], "data": [[1]]}}',
    "NaN": b'{"dataframe_split": {"columns": ["a"], "data": [[NaN]]}}',
}


@pytest.mark.parametrize("body", NOT_PLAIN.values(), ids=NOT_PLAIN.keys())
def test_what_is_not_plain_is_left_to_the_other_readers(body: bytes) -> None:
    assert READ(body) is None


def test_a_split_named_after_the_key_window_is_left_to_the_other_readers() -> None:
    body = json.dumps({"params": {"note": "x" * KEY_WINDOW_BYTES}, **json.loads(_body([[1.0, 2.0, 3.0]]))})

    assert READ(body.encode()) is None


def test_params_without_arrays_are_ignored() -> None:
    read = READ(_body([[1.0, 2.0, 3.0]], params={"threshold": 0.5}))

    assert read is not None
    assert read[1].tolist() == [[1.0, 2.0, 3.0]]


def test_a_declined_body_leaves_the_reader_ready_for_the_next() -> None:
    assert READ(NOT_PLAIN["a nested value"]) is None
    assert READ(NOT_PLAIN["not json"]) is None

    read = READ(_body([[1.0, 2.0, 3.0]]))

    assert read is not None
    assert read[1].tolist() == [[1.0, 2.0, 3.0]]


@st.composite
def split_bodies(draw: st.DrawFn) -> bytes:
    """Mostly plain splits, some with odd values, rows of the wrong length or odd columns."""
    columns: list[Any] = draw(st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=4))
    numbers = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53)
    data: list[Any] = draw(
        st.lists(st.lists(numbers, min_size=len(columns), max_size=len(columns)), min_size=0, max_size=4)
    )
    if data and draw(st.booleans()):
        row = draw(st.integers(0, len(data) - 1))
        data[row] = list(data[row])
        data[row][draw(st.integers(0, len(columns) - 1))] = draw(ODD_VALUES)
    if data and draw(st.booleans()):
        data[-1] = data[-1][: draw(st.integers(0, len(columns)))] + draw(st.lists(numbers, max_size=1))
    if draw(st.booleans()):
        columns[0] = draw(ODD_VALUES)
    return _body(data, columns)


def _may_be_declined(body: bytes) -> bool:
    """Plain bodies the reader may still leave to the others: integers beyond 64 bits (simdjson
    holds none) and brackets inside column names (its nesting check counts every `[`)."""
    split = json.loads(body)["dataframe_split"]
    huge = any(type(v) is int and not -(2**63) <= v < 2**64 for row in split["data"] for v in row)
    return huge or any("[" in name for name in split["columns"])


@settings(max_examples=400, deadline=None)
@given(split_bodies())
def test_an_accepted_body_is_read_exactly_as_pythons_json_reads_it(body: bytes) -> None:
    read = READ(body)
    expected = _as_python_reads_it(body)

    if read is not None:
        assert expected is not None
        assert _same(read, expected)
    else:
        assert expected is None or _may_be_declined(body)
