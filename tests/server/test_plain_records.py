"""The compiled plain-records scanner: what it accepts, Python's `json` reads the same.

Whatever `PlainRecordsReader` declines goes on to msgspec and the detailed check, so a wrong None
only costs time; a wrong array would be a wrong answer. Hence: every array it returns equals, bit
for bit, the one Python's `json` and `float` make of the same body, and every plain body is taken.
Mutated and truncated bodies probe the scanner's bounds (a crash would take the test run down).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.codecs._records_reader import read_records
from server.codecs.plain_records import PlainRecordsReader
from tests.server.json_samples import NUMBER_TEXTS, ODD_VALUES

NAMES = ("a", "bb", "c")
READ = PlainRecordsReader(NAMES, keys=("records",))
MAX = 100


def _body(records: object, **extra: object) -> bytes:
    return json.dumps({"records": records, **extra}).encode()


def _record(*values: object) -> dict[str, object]:
    return dict(zip(NAMES, values, strict=True))


def _as_python_reads_it(body: bytes, names: tuple[str, ...] = NAMES) -> np.ndarray | None:
    """The same body through `json`: a plain batch's rows in `names` order, or None when not plain."""

    def no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({key for key, _ in pairs}) != len(pairs):
            raise ValueError("a repeated key")
        return dict(pairs)

    try:
        document = json.loads(body, object_pairs_hook=no_repeats, parse_constant=_refuse)
    except ValueError:
        return None
    records = document.get("records") if isinstance(document, dict) else None
    plain = (
        set(document) == {"records"}
        and isinstance(records, list)
        and 0 < len(records) <= MAX
        and all(isinstance(r, dict) and set(r) == set(names) for r in records)
        and all(_plain_number(v) for r in records for v in r.values())
    )
    if not plain:
        return None
    return np.array([[float(r[name]) for name in names] for r in records], dtype=np.float64)


def _plain_number(value: object) -> bool:
    """A number msgspec also reads as a double: finite, and an integer of at most 19 digits."""
    if type(value) is int:
        return abs(value) < 10**19
    return type(value) is float and math.isfinite(value)


def _refuse(constant: str) -> None:
    raise ValueError(f"{constant} is not a JSON number")


def _same(read: np.ndarray, expected: np.ndarray) -> bool:
    return read.shape == expected.shape and read.tobytes() == expected.tobytes()


def test_a_dataset_sized_body_reads_as_pythons_json_reads_it(dataset: Any) -> None:
    names = tuple(dataset.columns)
    body = json.dumps({"records": dataset.to_dict(orient="records")}).encode()

    read = PlainRecordsReader(names, keys=("records",)).read(body, 1000)

    assert read is not None
    assert _same(read, dataset.to_numpy(dtype=np.float64))


def test_records_may_list_their_features_in_any_order() -> None:
    body = b'{"records": [{"c": 3, "a": 1, "bb": 2}, {"bb": 5, "c": 6, "a": 4}]}'

    read = READ.read(body, MAX)

    assert read is not None
    assert read.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]


def test_json_whitespace_anywhere_between_tokens_is_accepted() -> None:
    body = b' \r\n{ "records" :\t[ { "a" : 1 , "bb":2,"c" : 3 } ,\n{"a":4,"bb":5,"c":6} ] } \n'

    read = READ.read(body, MAX)

    assert read is not None
    assert read.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]


# Beyond the texts both fast readers share: more digit layouts, the largest 19-digit integers
# and the extremes of a double.
RECORDS_ONLY_TEXTS = [
    "0e5",
    "-1e+2",
    "17.99",
    "0.07871",
    "9999999999999999999",
    "-9999999999999999999",
    "1e300",
    "4.9e-324",
    "0.000000000000000000000000001",
    "123456789012345678901234567890e-10",
    "1.7976931348623157e308",
]


@pytest.mark.parametrize("text", [*NUMBER_TEXTS, *RECORDS_ONLY_TEXTS])
def test_numbers_read_as_pythons_float_reads_them(text: str) -> None:
    body = b'{"records": [{"a": %s, "bb": 0, "c": 0}]}' % text.encode()

    read = READ.read(body, MAX)

    assert read is not None
    expected = _as_python_reads_it(body)
    assert expected is not None
    assert _same(read, expected)


NOT_PLAIN = {
    "no records key": _body([_record(1, 2, 3)]).replace(b"records", b"recordz"),
    "an extra top-level key": _body([_record(1, 2, 3)], meta=1),
    "a repeated records key": b'{"records": [{"a": 1, "bb": 2, "c": 3}], "records": []}',
    "no records": _body([]),
    "records as an object": b'{"records": {"a": 1, "bb": 2, "c": 3}}',
    "a record as a list": _body([[1, 2, 3]]),
    "a missing feature": b'{"records": [{"a": 1, "bb": 2}]}',
    "an unknown feature": b'{"records": [{"a": 1, "bb": 2, "c": 3, "d": 4}]}',
    "an unknown feature instead": b'{"records": [{"a": 1, "bb": 2, "d": 4}]}',
    "a repeated feature": b'{"records": [{"a": 1, "bb": 2, "a": 3}]}',
    "an escaped key": b'{"records": [{"\\u0061": 1, "bb": 2, "c": 3}]}',
    "an escape in the top key": b'{"rec\\u006frds": [{"a": 1, "bb": 2, "c": 3}]}',
    "a control character in a key": b'{"records": [{"a\n": 1, "bb": 2, "c": 3}]}',
    "a prefix of a feature": b'{"records": [{"a": 1, "b": 2, "c": 3}]}',
    "a null": b'{"records": [{"a": null, "bb": 2, "c": 3}]}',
    "a boolean": b'{"records": [{"a": true, "bb": 2, "c": 3}]}',
    "a string": b'{"records": [{"a": "1", "bb": 2, "c": 3}]}',
    "an array": b'{"records": [{"a": [1], "bb": 2, "c": 3}]}',
    "an object": b'{"records": [{"a": {"x": 1}, "bb": 2, "c": 3}]}',
    "NaN": b'{"records": [{"a": NaN, "bb": 2, "c": 3}]}',
    "Infinity": b'{"records": [{"a": -Infinity, "bb": 2, "c": 3}]}',
    "a leading zero": b'{"records": [{"a": 01, "bb": 2, "c": 3}]}',
    "a plus sign": b'{"records": [{"a": +1, "bb": 2, "c": 3}]}',
    "a bare point": b'{"records": [{"a": 1., "bb": 2, "c": 3}]}',
    "a leading point": b'{"records": [{"a": .5, "bb": 2, "c": 3}]}',
    "an empty exponent": b'{"records": [{"a": 1e, "bb": 2, "c": 3}]}',
    "a hexadecimal number": b'{"records": [{"a": 0x10, "bb": 2, "c": 3}]}',
    "a number too long to be plain": b'{"records": [{"a": 1.%s, "bb": 2, "c": 3}]}' % (b"0" * 500),
    # Leading fraction zeros that would cancel against an exponent counted only to a cap.
    "fraction zeros against a huge exponent": b'{"records": [{"a": 0.%s1e1000000, "bb": 2, "c": 3}]}'
    % (b"0" * 99999),
    "a long number the fast path could read": b'{"records": [{"a": 0.%s1e501, "bb": 2, "c": 3}]}'
    % (b"0" * 500),
    "an integer of 20 digits": b'{"records": [{"a": 18446744073709551615, "bb": 2, "c": 3}]}',
    "a number beyond a double": b'{"records": [{"a": 1e400, "bb": 2, "c": 3}]}',
    "a negative number beyond a double": b'{"records": [{"a": -1e400, "bb": 2, "c": 3}]}',
    "two numbers": b'{"records": [{"a": 1 2, "bb": 2, "c": 3}]}',
    "a trailing comma in a record": b'{"records": [{"a": 1, "bb": 2, "c": 3,}]}',
    "a trailing comma in records": b'{"records": [{"a": 1, "bb": 2, "c": 3},]}',
    "trailing bytes": _body([_record(1, 2, 3)]) + b" x",
    "a second document": _body([_record(1, 2, 3)]) * 2,
    "a byte-order mark": b"\xef\xbb\xbf" + _body([_record(1, 2, 3)]),
    "a top-level list": b'[{"records": []}]',
    "too many records": _body([_record(1, 2, 3)] * (MAX + 1)),
    "empty": b"",
}


@pytest.mark.parametrize("body", NOT_PLAIN.values(), ids=NOT_PLAIN.keys())
def test_what_is_not_plain_is_left_to_the_other_readers(body: bytes) -> None:
    assert READ.read(body, MAX) is None


def test_exactly_the_most_records_allowed_are_read() -> None:
    read = READ.read(_body([_record(1, 2, 3)] * MAX), MAX)

    assert read is not None
    assert read.shape == (MAX, 3)


@pytest.mark.parametrize("name", ['q"uote', "back\\slash", "new\nline"])
def test_a_feature_name_that_needs_escapes_leaves_every_body_to_the_other_readers(name: str) -> None:
    reader = PlainRecordsReader(("a", name), keys=("records",))
    body = json.dumps({"records": [{"a": 1, name: 2}]}).encode()

    assert reader.read(body, MAX) is None


def test_a_repeated_feature_name_leaves_every_body_to_the_other_readers() -> None:
    reader = PlainRecordsReader(("a", "a"), keys=("records",))

    assert reader.read(b'{"records": [{"a": 1, "a": 2}]}', MAX) is None


@pytest.mark.parametrize(
    "out",
    [
        np.empty((2, 3), dtype=np.float32),
        np.empty((3, 2), dtype=np.float64).T,
        np.empty(7, dtype=np.float64)[1:].reshape(2, 3)[:, ::1].copy().view(np.int64),
        memoryview(bytearray(6 * 8 + 1))[1:],
    ],
    ids=["float32", "not contiguous", "int64", "misaligned bytes"],
)
def test_the_scanner_writes_only_into_an_aligned_contiguous_float64_buffer(out: Any) -> None:
    body = _body([_record(1, 2, 3)])

    with pytest.raises((ValueError, BufferError)):
        read_records(body, (b"records",), tuple(name.encode() for name in NAMES), out)


def test_non_ascii_feature_names_are_matched_as_utf8() -> None:
    reader = PlainRecordsReader(("größe", "ß"), keys=("records",))

    read = reader.read('{"records": [{"ß": 2, "größe": 1}]}'.encode(), MAX)

    assert read is not None
    assert read.tolist() == [[1.0, 2.0]]


def test_every_prefix_of_a_plain_body_is_declined() -> None:
    body = _body([_record(1.5, -2, 3e-5), _record(4, 5, 6)])

    assert all(READ.read(body[:end], MAX) is None for end in range(len(body)))


numbers = st.floats(allow_nan=False) | st.integers(-(2**70), 2**70)


@st.composite
def records_bodies(draw: st.DrawFn) -> bytes:
    """Mostly plain batches, some with odd values, missing, extra or repeated keys, odd spacing."""
    keys = st.sampled_from([*NAMES, "d", "b"])
    records: list[Any] = []
    for _ in range(draw(st.integers(0, 4))):
        order = draw(st.permutations(NAMES))
        pairs = [(name, draw(numbers)) for name in order]
        if draw(st.integers(0, 5)) == 0:
            pairs[draw(st.integers(0, len(pairs) - 1))] = (draw(keys), draw(ODD_VALUES))
        if draw(st.integers(0, 7)) == 0:
            pairs.append((draw(keys), draw(numbers)))
        records.append(pairs)
    separator = draw(st.sampled_from([(", ", ": "), (",", ":"), (" ,\n", " :\t")]))
    items = separator[0].join(
        "{" + separator[0].join(f"{json.dumps(k)}{separator[1]}{json.dumps(v)}" for k, v in pairs) + "}"
        for pairs in records
    )
    return f'{{"records"{separator[1]}[{items}]}}'.encode()


@settings(max_examples=400, deadline=None)
@given(records_bodies())
def test_any_body_is_read_as_pythons_json_reads_it_or_declined(body: bytes) -> None:
    read = READ.read(body, MAX)

    expected = _as_python_reads_it(body)
    if expected is None:
        assert read is None
    else:
        assert read is not None
        assert _same(read, expected)


@settings(max_examples=400, deadline=None)
@given(records_bodies(), st.data())
def test_a_damaged_body_is_declined_or_read_as_pythons_json_reads_it(
    body: bytes, data: st.DataObject
) -> None:
    damaged = bytearray(body)
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, max(0, len(damaged) - 1)))
        damage = data.draw(st.sampled_from(["replace", "delete", "insert"]))
        byte = data.draw(st.sampled_from(b'{}[]":,.-+eE0123456789 \\\x00\xff' + b"abcrds"))
        if damage == "replace" and damaged:
            damaged[position] = byte
        elif damage == "delete" and damaged:
            del damaged[position]
        else:
            damaged.insert(position, byte)

    read = READ.read(bytes(damaged), MAX)

    if read is not None:
        expected = _as_python_reads_it(bytes(damaged))
        assert expected is not None
        assert _same(read, expected)


# Bodies of every size, each in an allocation of its own that ends where the body ends, so that
# under `make sanitize` (AddressSanitizer, with PYTHONMALLOC=malloc: no pymalloc arena around
# small objects) a read one byte past the end is caught. A bytes object carries a NUL after its
# last byte, which the scanner must not need either: the same bodies go in NUL-less buffers too.


def _fresh_bytes(data: bytes) -> bytes:
    """An exact copy in a newly allocated bytes object (a whole slice would be the object itself)."""
    return bytes(bytearray(data))


def _exact_buffer(data: bytes) -> np.ndarray:
    """An exact copy in a buffer of exactly `len(data)` bytes, with nothing after it."""
    buffer = np.empty(len(data), dtype=np.uint8)
    buffer[:] = np.frombuffer(data, dtype=np.uint8)
    return buffer


ALLOCATIONS = {"bytes": _fresh_bytes, "no terminating NUL": _exact_buffer}


MAX_NUMBER_CHARS = 400  # the scanner's: longer numbers are legal JSON, left to the other readers


def _sized_bodies() -> list[tuple[bytes, int]]:
    """Plain bodies of every length from the shortest to several hundred bytes, with the length of
    their longest number: the last value grows a character at a time ("7", "-7", "7.3", "7.33",
    …; past 19 significant digits the slow path reads it, past MAX_NUMBER_CHARS it is declined),
    in a body of one record and of two."""
    bodies = []
    for records in (1, 2):
        for digits in range(-1, 420):
            last = {-1: "7", 0: "-7"}.get(digits, "7." + "3" * digits)
            items = ", ".join([f'{{"a": 1, "bb": -2.5, "c": {last}}}'] * records)
            bodies.append((f'{{"records": [{items}]}}'.encode(), len(last)))
    return bodies


SIZED_BODIES = _sized_bodies()


def test_the_sized_bodies_cover_every_length_up_to_hundreds_of_bytes() -> None:
    lengths = {len(body) for body, _ in SIZED_BODIES}
    assert set(range(min(lengths), 450)) <= lengths


@pytest.mark.parametrize("allocate", ALLOCATIONS.values(), ids=ALLOCATIONS.keys())
def test_bodies_of_every_length_read_as_pythons_json_reads_them(allocate: Any) -> None:
    for body, longest_number in SIZED_BODIES:
        read = READ.read(allocate(body), MAX)
        if longest_number > MAX_NUMBER_CHARS:
            assert read is None, body
            continue
        expected = _as_python_reads_it(body)
        assert read is not None, body
        assert expected is not None, body
        assert _same(read, expected), body


@pytest.mark.parametrize("allocate", ALLOCATIONS.values(), ids=ALLOCATIONS.keys())
def test_every_truncation_of_bodies_of_every_length_is_declined(allocate: Any) -> None:
    for body, _ in SIZED_BODIES[::5]:
        for end in range(len(body)):
            assert READ.read(allocate(body[:end]), MAX) is None, body[:end]


@pytest.mark.parametrize("allocate", ALLOCATIONS.values(), ids=ALLOCATIONS.keys())
def test_bodies_cut_inside_any_token_at_any_length_are_declined(allocate: Any) -> None:
    """Every length from 0 to 400, cut from bodies whose last token runs to the very end of the
    buffer: a key, a string, a number, whitespace, a nested opening, an exponent."""
    for length in range(400):
        for filler in (b'"a', b"9", b" ", b"[{", b'"bb": 1e'):
            body = (b'{"records": [{"a": 1, "bb": 2, "c": 3}, {"c": 0.5, ' + filler * length)[:length]
            assert READ.read(allocate(body), MAX) is None, body
