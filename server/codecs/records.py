"""Strict records for /predict and /batch-predict: exactly the signature's features, finite numbers.

A record is a JSON object mapping each feature name to a number. Anything else is refused with
a `Problem` naming the field (and the record index in a batch); every problem in the request is
reported, up to `MAX_PROBLEMS`, so a client can fix them all at once. A key that is not a feature
is named by its position, never quoted: it is the client's text, and may be a megabyte long.
The work is bounded too: a record may hold at most `MAX_COLUMNS` keys (one problem says so,
without looking at them), and problems past `MAX_PROBLEMS` are counted, not built.

Three readers give one verdict. A plain batch is scanned straight into its rows by compiled code
(`plain_records`), which takes only bodies it can prove plain. msgspec decodes any other clean
body straight into typed records, in C. numpy checks the range of the whole array in one pass.
Together they accept only what the rules accept (numbers within ±1e100, no booleans, no NaN or
infinities, no missing or unknown fields). Whatever they refuse is read again with orjson and
checked field by field here, which accepts what the rules allow and msgspec does not (integers
too large for it) and names every problem in what they refuse. (A range bound inside msgspec's
types costs a fifth of the decode.) The `fast_*` methods are the compiled readers alone (cheap,
for the event loop); the `checked_*` ones are the Python check, which the routes run on a worker
thread for large bodies.
"""

from __future__ import annotations

import math
from itertools import chain
from typing import Any

import msgspec
import numpy as np
from msgspec.structs import astuple

from server.codecs import json_text
from server.codecs.limits import MAX_COLUMNS, MAX_PROBLEMS
from server.codecs.plain_records import PlainRecordsReader
from server.errors import InvalidInput, Problem

# No measurement lies beyond 1e100; values that do can overflow a model's arithmetic into answers
# that are not numbers, so the strict routes refuse them by name (and document the range).
FEATURE_LIMIT = 1e100
OUT_OF_RANGE = f"must lie between {-FEATURE_LIMIT:g} and {FEATURE_LIMIT:g}"

_JSON_TYPE_NAMES = {
    str: "a string",
    bool: "a boolean",
    type(None): "null",
    dict: "an object",
    list: "an array",
}


def _value_problem(value: Any) -> str | None:
    """Why `value` is not an acceptable feature value, or None when it is."""
    kind = type(value)
    if kind not in (float, int):
        return f"must be a number, not {_JSON_TYPE_NAMES.get(kind, kind.__name__)}"
    try:
        number = float(value)
    except OverflowError:
        return "must be a finite number (it overflows a double)"
    if not math.isfinite(number):
        return "must be a finite number"
    if abs(number) > FEATURE_LIMIT:
        return OUT_OF_RANGE
    return None


class RecordCodec:
    """Validates records against one model's feature names and lays them out as float64 rows."""

    def __init__(self, feature_names: tuple[str, ...]) -> None:
        self.feature_names = feature_names
        self._expected = frozenset(feature_names)
        # Records hold floats only, so the garbage collector need not track a thousand of them.
        record = msgspec.defstruct(
            "Record", [(name, float) for name in feature_names], forbid_unknown_fields=True, gc=False
        )
        batch = msgspec.defstruct("Batch", [("records", list[record])], forbid_unknown_fields=True, gc=False)
        self._decode_record = msgspec.json.Decoder(record).decode
        self._decode_batch = msgspec.json.Decoder(batch).decode
        self._plain = PlainRecordsReader(feature_names, keys=("records",))

    def single(self, body: bytes) -> np.ndarray:
        """The /predict body (one record) as a (1, features) array."""
        rows = self.fast_single(body)
        return rows if rows is not None else self.checked_single(body)

    def fast_single(self, body: bytes) -> np.ndarray | None:
        """`single` by msgspec alone; None when the body needs the detailed check."""
        try:
            rows = np.array([astuple(self._decode_record(body))], dtype=np.float64)
        except msgspec.MsgspecError:
            return None
        return rows if _within_limit(rows) else None

    def checked_single(self, body: bytes) -> np.ndarray:
        """`single` by the detailed check: the rows, or `InvalidInput` naming every problem."""
        return self.single_payload(json_text.decode(body))

    def batch(self, body: bytes, max_batch_size: int) -> np.ndarray:
        """The /batch-predict body (`{"records": [...]}`) as an (n, features) array."""
        rows = self.fast_batch(body, max_batch_size)
        return rows if rows is not None else self.checked_batch(body, max_batch_size)

    def fast_batch(self, body: bytes, max_batch_size: int) -> np.ndarray | None:
        """`batch` by the compiled scanner, then msgspec; None when the body needs the detailed
        check. A batch of the wrong size is refused here (one comparison)."""
        rows = self._plain.read(body, max_batch_size)
        if rows is not None and _within_limit(rows):
            return rows
        try:
            records = self._decode_batch(body).records
        except msgspec.MsgspecError:
            return None
        _check_count(len(records), max_batch_size)
        rows = struct_rows(records, len(self.feature_names))
        return rows if _within_limit(rows) else None

    def checked_batch(self, body: bytes, max_batch_size: int) -> np.ndarray:
        """`batch` by the detailed check: the rows, or `InvalidInput` naming every problem."""
        return self.batch_payload(json_text.decode(body), max_batch_size)

    def _record_problems(self, record: Any, index: int | None, found: _Problems) -> None:
        """Adds what is wrong with one record to `found`, in O(features + MAX_COLUMNS)."""
        if not isinstance(record, dict):
            found.add(Problem(f"must be a JSON object of features, not {_describe(record)}", index=index))
            return
        if len(record) > MAX_COLUMNS:
            found.add(
                Problem(
                    f"too many keys ({len(record)}); a record may hold at most {MAX_COLUMNS}", index=index
                )
            )
            return
        present = 0
        for name in self.feature_names:
            if name not in record:
                found.add(Problem("is required", field=name, index=index))
                continue
            present += 1
            if (reason := _value_problem(record[name])) is not None:
                found.add(Problem(reason, field=name, index=index))
        unknown = len(record) - present
        if unknown and not found.full:  # name them; once full, `len` has already counted them
            for position, key in enumerate(record):
                if key not in self._expected:
                    found.add(Problem("is not a feature of this model", index=index, position=position))
                    unknown -= 1
                    if unknown == 0 or found.full:
                        break
        found.count(unknown)

    def _rows(self, records: list[Any], indexed: bool) -> np.ndarray:
        names = self.feature_names
        try:
            # The common case costs one pass; only a failure pays for the detailed check.
            rows = [[_checked(record[name]) for name in names] for record in records]
            if all(len(record) == len(names) for record in records):
                return np.array(rows, dtype=np.float64).reshape(len(records), len(names))
        except (KeyError, TypeError, ValueError, OverflowError):
            pass
        found = _Problems()
        for position, record in enumerate(records):
            self._record_problems(record, position if indexed else None, found)
        if not found.total:  # unreachable unless the fast check and the detailed check disagree
            raise AssertionError("record validation disagreed with itself")
        raise found.error()

    def single_payload(self, payload: Any) -> np.ndarray:
        """One parsed record as a (1, features) array, every problem named."""
        return self._rows([payload], indexed=False)

    def batch_payload(self, payload: Any, max_batch_size: int) -> np.ndarray:
        """A parsed `{"records": [...]}` as an (n, features) array, every problem named."""
        if not isinstance(payload, dict):
            raise InvalidInput.from_problems(
                [Problem(f"body must be a JSON object, not {_describe(payload)}")]
            )
        extra = len(payload) - ("records" in payload)
        if extra:
            found = _Problems()
            for position, key in enumerate(payload):
                if key != "records":
                    found.add(Problem("is not accepted here", position=position))
                    if found.full:
                        break
            found.count(extra - len(found.named))
            raise found.error()
        records = payload.get("records")
        if not isinstance(records, list):
            reason = "is required" if records is None and "records" not in payload else "must be an array"
            raise InvalidInput.from_problems([Problem(reason, field="records")])
        _check_count(len(records), max_batch_size)
        return self._rows(records, indexed=True)


class _Problems:
    """The first `MAX_PROBLEMS` problems, and how many there are in all: once it is full, callers
    count what remains instead of building (or even finding) each one."""

    def __init__(self) -> None:
        self.named: list[Problem] = []
        self.total = 0

    @property
    def full(self) -> bool:
        return len(self.named) >= MAX_PROBLEMS

    def add(self, problem: Problem) -> None:
        if not self.full:
            self.named.append(problem)
        self.total += 1

    def count(self, more: int) -> None:
        self.total += more

    def error(self) -> InvalidInput:
        return InvalidInput.from_problems(self.named, total=self.total)


def struct_rows(records: list[Any], width: int) -> np.ndarray:
    """Decoded record structs (float fields, signature order) as an (n, width) float64 array:
    `fromiter` over their values is a third faster than `np.array` of their tuples."""
    values = chain.from_iterable(map(astuple, records))
    return np.fromiter(values, dtype=np.float64, count=len(records) * width).reshape(len(records), width)


def _check_count(count: int, max_batch_size: int) -> None:
    if not 1 <= count <= max_batch_size:
        raise InvalidInput.from_problems(
            [Problem(f"must hold 1 to {max_batch_size} records, got {count}", field="records")]
        )


def _within_limit(rows: np.ndarray) -> bool:
    """Every value within ±FEATURE_LIMIT (False for NaN, which JSON cannot carry anyway)."""
    return bool((np.abs(rows) <= FEATURE_LIMIT).all())


def _checked(value: Any) -> float:
    """`value` as a float when it is an acceptable number; raises otherwise."""
    kind = type(value)
    if kind is float or kind is int:
        number = float(value)
        if -FEATURE_LIMIT <= number <= FEATURE_LIMIT:  # NaN fails both comparisons
            return number
    raise ValueError


def _describe(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(
        type(value), "a number" if type(value) in (int, float) else type(value).__name__
    )
