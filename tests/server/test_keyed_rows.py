"""The compiled keyed rows: orjson's JSON of a 2-D array, cut into one object per row.

What it makes is what the prediction log stores, so every object must equal, as text, what orjson
writes for the same row as a dict of Python values (NaN and infinities as null included); any
text that is not such an array must raise ValueError, never crash or read past its end (the
truncations at every length below also run under AddressSanitizer in `make sanitize`).
"""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from server.observe.prediction_log._keyed_rows import keyed_rows

NUMPY = orjson.OPT_SERIALIZE_NUMPY


def _keys(names: tuple[str, ...]) -> tuple[bytes, ...]:
    return tuple(orjson.dumps(name) for name in names)


def _expected(values: np.ndarray, names: tuple[str, ...]) -> list[str]:
    return [orjson.dumps(dict(zip(names, row, strict=True))).decode() for row in values.tolist()]


names_strategy = st.lists(st.text(min_size=0, max_size=12), min_size=1, max_size=8, unique=True).map(tuple)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), names=names_strategy)
def test_every_row_is_the_object_orjson_writes_for_its_values(
    data: st.DataObject, names: tuple[str, ...]
) -> None:
    rows = data.draw(st.integers(min_value=0, max_value=6))
    values = data.draw(
        hnp.arrays(np.float64, (rows, len(names)), elements=st.floats(allow_nan=True, allow_infinity=True))
    )
    try:
        keys = _keys(names)
    except orjson.JSONEncodeError:  # a lone surrogate: the log refuses such names before this
        return
    assert keyed_rows(orjson.dumps(values, option=NUMPY), keys) == _expected(values, names)


def test_not_a_number_and_infinities_are_null_and_integers_and_booleans_keep_their_text() -> None:
    keys = _keys(("a", "b", "c"))
    floats = np.array([[math.nan, math.inf, -math.inf]])
    assert keyed_rows(orjson.dumps(floats, option=NUMPY), keys) == ['{"a":null,"b":null,"c":null}']
    integers = np.array([[1, -2, 3]], dtype=np.int64)
    assert keyed_rows(orjson.dumps(integers, option=NUMPY), keys) == ['{"a":1,"b":-2,"c":3}']
    booleans = np.array([[True, False, True]])
    assert keyed_rows(orjson.dumps(booleans, option=NUMPY), keys) == ['{"a":true,"b":false,"c":true}']


def test_keys_that_need_escapes_or_are_not_ascii_are_written_as_given() -> None:
    names = ('quote"d', "back\\slash", "é", "日本")
    values = np.array([[1.5, 2.0, -0.0, 1e300]])
    assert keyed_rows(orjson.dumps(values, option=NUMPY), _keys(names)) == _expected(values, names)


def test_no_rows_is_an_empty_list() -> None:
    assert keyed_rows(orjson.dumps(np.zeros((0, 2)), option=NUMPY), _keys(("a", "b"))) == []


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"[",
        b"]",
        b"[[1,2]",
        b"[[1,2,3]]",
        b"[[1]]",
        b"[[1,2]]x",
        b"[[1,2],]",
        b"[[1,],[2]]",
        b"[[,1]]",
        b"[[1 ,2]]",
        b" [[1,2]]",
        b'[["a",2]]',
        b"[[[1],2]]",
        b"[[1,2][3,4]]",
        b"[[1,\x002]]",
        b"[[1,\xc3\xa92]]",
        b"{}",
    ],
)
def test_text_that_is_not_a_two_column_array_is_refused(text: bytes) -> None:
    with pytest.raises(ValueError, match="not the JSON of a 2-D array of 2 columns"):
        keyed_rows(text, _keys(("a", "b")))


def test_every_truncation_of_an_array_is_refused() -> None:
    text = orjson.dumps(np.array([[1.25, -3e-7], [math.nan, 42.0], [0.1, 7.0]]), option=NUMPY)
    keys = _keys(("a", "b"))
    for end in range(len(text)):
        with pytest.raises(ValueError, match="not the JSON of a 2-D array"):
            keyed_rows(text[:end], keys)
    assert len(keyed_rows(text, keys)) == 3


def test_keys_must_be_a_non_empty_tuple_of_bytes() -> None:
    with pytest.raises(ValueError, match="keys must not be empty"):
        keyed_rows(b"[[1]]", ())
    with pytest.raises(TypeError, match="keys must be bytes"):
        keyed_rows(b"[[1]]", ("a",))  # type: ignore[arg-type]
