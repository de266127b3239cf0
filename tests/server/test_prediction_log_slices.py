"""Slices, the worker's requests on their way to its log writer: what is decoded is what was queued,
whatever the answers' shapes, and nothing but plain values is ever read back."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from model_wrapper import Prediction
from server.observe.prediction_log import slices
from server.observe.prediction_log.entry import Entry, Source
from server.observe.prediction_log.rows import SQLITE_TUPLES, rows_of

SOURCE = Source("m", "3", "challenger", ("a", "b"), ("no", "yes"))


def _entry(features: np.ndarray | None, answer: object, caller: str | None = "svc") -> Entry:
    return Entry(1.7e9 + 0.25, "req-1", "/invocations", SOURCE, features, answer, 2.5, caller)  # type: ignore[arg-type]


def _prediction(rows: int) -> Prediction:
    labels = np.array(["yes", "no", "yes"][:rows], dtype=object)
    return Prediction(np.arange(rows), labels, np.linspace(0, 1, rows * 2).reshape(rows, 2))


BATCHES = {
    "single rows": [
        (0, _entry(np.array([[1.0, 2.0]]), _prediction(1))),
        (1, _entry(np.array([[3.5, -4.0]]), _prediction(1), caller=None)),
    ],
    "several rows a request": [(7, _entry(np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), _prediction(3)))],
    "widths and types that differ": [
        (0, _entry(np.array([[1.0, 2.0]]), _prediction(1))),
        (1, _entry(np.array([[1, 2, 3]], dtype=np.int32), _prediction(1))),
        (2, _entry(np.array([[1.5, 2.5]], dtype=np.float32), _prediction(1))),
    ],
    "answers without features, as lists or none": [
        (0, _entry(None, ["a", 1, None])),
        (1, _entry(None, None)),
        (
            2,
            _entry(
                np.array([[1.0, 2.0]]),
                Prediction(np.array([1]), np.array([True], dtype=object), np.ones((1, 3))),
            ),
        ),
    ],
}


def vars_of(source: Source) -> tuple[object, ...]:
    return (source.model_name, source.version, source.variant, source.feature_names, source.class_names)


@pytest.mark.parametrize("batch", BATCHES.values(), ids=BATCHES.keys())
def test_a_decoded_slice_makes_the_rows_its_requests_make(batch: list[tuple[int, Entry]]) -> None:
    decoded = slices.decode(slices.encode(batch))
    assert [number for number, _ in decoded] == [number for number, _ in batch]
    for (_, before), (_, after) in zip(batch, decoded, strict=True):
        assert vars_of(after.source) == vars_of(before.source)
        assert (after.logged_at, after.request_id, after.route, after.latency_ms, after.caller) == (
            before.logged_at,
            before.request_id,
            before.route,
            before.latency_ms,
            before.caller,
        )
        assert after.rows == before.rows
    assert rows_of(decoded, "k", SQLITE_TUPLES) == rows_of(batch, "k", SQLITE_TUPLES)


def test_a_slice_that_names_any_type_is_refused_unread() -> None:
    hostile = pickle.dumps(os.system)  # unpickled by a plain pickle.loads, it would be callable
    with pytest.raises(pickle.UnpicklingError, match=r"built-in values only, not posix\.system"):
        slices.decode(hostile)


def test_an_array_of_objects_is_not_encoded() -> None:
    with pytest.raises(TypeError, match="an array of objects"):
        slices.encode([(0, _entry(np.array([["x", 1.0]], dtype=object), None))])
