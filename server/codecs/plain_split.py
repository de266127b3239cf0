"""MLflow's `dataframe_split` layout read with simdjson: the numbers go to doubles, not to Python.

A thousand-row split body holds 30,000 numbers. Decoded into Python (msgspec's
`list[list[float]]`), each becomes a float object inside one of a thousand lists, and the lists
are then copied into an array: most of a thousand-row request's time. simdjson parses the body
into its own tape, and `Array.as_buffer` copies the rows' numbers straight into a buffer of
doubles, with no Python object per value.

`PlainSplitReader` answers only what it can prove plain: `{"dataframe_split": {"columns": [...],
"data": [[...], ...]}}` (plus `params`, which a model without a params schema ignores), no other
or repeated key, string column names, every row an array of exactly one number per column. It
returns None for anything else, and the caller's other readers, MLflow's parsers last, take over.
Its numbers are those Python's `json` reads (correctly rounded doubles, integers converted the
same way); integers beyond 64 bits and numbers beyond a double's range are left to the others.
"""

from __future__ import annotations

import threading

import numpy as np
import simdjson

from server.codecs.limits import MAX_COLUMNS

_TOP_KEYS = (frozenset({"dataframe_split"}), frozenset({"dataframe_split", "params"}))
_SPLIT_KEYS = frozenset({"columns", "data"})
# What simdjson raises for a body that is not JSON, not UTF-8, or not of the types asked for.
_NOT_PLAIN = (ValueError, TypeError, KeyError, IndexError, RuntimeError)


# A split body names its layout within its first bytes (after `params`, if any): looking only
# there spares every other body a scan of its whole length. A split
# whose key comes later (long `params` first) is left to the other readers.
KEY_WINDOW_BYTES = 1024

# Bodies up to this size share a parser that keeps its buffers; a larger one (up to
# MAX_BODY_BYTES) gets a parser of its own, so one huge body does not hold tens of MB for good.
REUSED_PARSER_MAX_BYTES = 1 << 20


class PlainSplitReader:
    """Reads plain split bodies, one reused simdjson parser per thread.

    A parser that has read a large body keeps its buffers, which saves allocating them again for
    each thousand-row body after the first. Its objects must not outlive the call that made them (the
    parser refuses to parse again while they do), so none leaves `__call__`.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def _parser_for(self, size: int) -> simdjson.Parser:
        if size > REUSED_PARSER_MAX_BYTES:
            return simdjson.Parser()
        parser = getattr(self._local, "parser", None)
        if parser is None:
            parser = self._local.parser = simdjson.Parser()
        return parser

    def __call__(self, body: bytes) -> tuple[list[str], np.ndarray] | None:
        """(columns, (rows, columns) float64 array) for a plain `dataframe_split` body, else None."""
        if body.find(b'"dataframe_split"', 0, KEY_WINDOW_BYTES) < 0:
            return None
        parser = self._parser_for(len(body))
        try:
            document = parser.parse(body)
            if not isinstance(document, simdjson.Object) or not _has_keys(document, _TOP_KEYS):
                return None
            split = document["dataframe_split"]
            if not isinstance(split, simdjson.Object) or not _has_keys(split, (_SPLIT_KEYS,)):
                return None
            columns, data = split["columns"], split["data"]
            if not isinstance(columns, simdjson.Array) or not isinstance(data, simdjson.Array):
                return None
            if len(columns) > MAX_COLUMNS:  # left to MLflow's path (off the loop), which refuses it
                return None
            return _rows(columns.as_list(), data, body.count(b"["))
        except _NOT_PLAIN:
            return None


def _has_keys(document: simdjson.Object, allowed: tuple[frozenset[str], ...]) -> bool:
    """The object's keys are one of the `allowed` sets, none repeated (Python's `json` would keep
    a repeated key's last value, simdjson's lookup its first)."""
    keys = list(document.keys())
    return len(keys) == len(set(keys)) and frozenset(keys) in allowed


def _rows(names: list[object], data: simdjson.Array, brackets: int) -> tuple[list[str], np.ndarray] | None:
    width, count = len(names), len(data)
    if not count or not width or not all(type(name) is str for name in names):
        return None
    # `as_buffer` flattens nested arrays, so nesting must be ruled out first. When every row is an
    # array, the columns, the data and its rows open `count + 2` arrays, and any other `[` in the
    # body (a nested array, an array in `params`, a bracket inside a string) only adds to that.
    # A row that is not an array (a number, a string, an object) either has no `len` or makes
    # `as_buffer` raise: it takes numbers only, so no string can stand in for a missing bracket.
    if brackets != count + 2:
        return None
    if any(len(row) != width for row in data):
        return None
    values = np.frombuffer(data.as_buffer(of_type="d"), dtype=np.float64)
    if values.size != count * width:
        return None
    return names, values.reshape(count, width)  # type: ignore[return-value]
