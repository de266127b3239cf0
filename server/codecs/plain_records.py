"""A plain records body read by the compiled scanner straight into float64 rows.

msgspec decodes a 1000-record body into 1000 structs of 30 Python floats, and numpy then copies
those 30,000 floats into the array: most of such a request's time. `_records_reader` (C, in this
folder) scans the body's bytes and writes each number into the array where it belongs, with no
object per value.

The scanner only proves a body plain (one top-level key, `{"records": [...]}` on /batch-predict or
MLflow's `dataframe_records`, `instances` or `inputs` on /invocations; every record exactly the
model's features; every value a JSON number) and returns None for anything else. The caller then
reads the body as before: `RecordCodec` with msgspec and its detailed check, which name the
problem; /invocations with msgspec, then MLflow's own parsers. Its numbers are the ones
Python's `json` and `float` give (correctly rounded; integers as `float(int)`), so a body reads to
the same array whichever reader takes it (a property test holds the two to that, bit for bit).
"""

from __future__ import annotations

import numpy as np

from server.codecs._records_reader import read_records


class PlainRecordsReader:
    """Reads plain records bodies under one of `keys` for one model's features, in signature order."""

    def __init__(self, feature_names: tuple[str, ...], keys: tuple[str, ...]) -> None:
        self._names = tuple(name.encode() for name in feature_names)
        self._keys = tuple(key.encode() for key in keys)
        self._width = len(feature_names)
        # The scanner needs each name once, and compares names in place with the body's bytes, so
        # a name a key could only spell with escapes (a quote, backslash or control character)
        # would be misread: with such names no body is plain. Checked once, here, per model.
        self._usable = len(set(self._names)) == len(self._names) and not any(
            byte in b'"\\' or byte < 0x20 for name in self._names for byte in name
        )
        # Each field is at least its name, two quotes, a colon and a digit: the most records a
        # body of n bytes can hold is n // this.
        self._min_record_bytes = max(1, sum(len(name) + 4 for name in self._names))

    def read(self, body: bytes, max_records: int | None = None) -> np.ndarray | None:
        """The records as an (n, features) array, or None when the body is not plain or holds
        more than `max_records` records (the general reader then says what is wrong)."""
        # No body holds more records than this, so the rows are written in place and returned as
        # a view, never copied. (Rows the scanner does not reach are never touched: what the
        # bound over-counts costs address space, not memory.)
        capacity = len(body) // self._min_record_bytes
        if max_records is not None:
            capacity = min(capacity, max_records)
        if capacity < 1 or not self._usable:
            return None
        rows = np.empty((capacity, self._width), dtype=np.float64)
        count = read_records(body, self._keys, self._names, rows)
        return rows[:count] if count > 0 else None
