"""Queued requests as bytes, from the worker to its log writer process and back into entries.

A slice is a few dozen requests in the order they were offered. Encoding is most of what the
worker's event loop does for the log, so it is columns of plain values: every request's features
(and probabilities) joined into one array sent as its raw bytes, the classes as text, the sources
once each. The bytes are pickled with nothing but built-in types (str, bytes, numbers, lists,
tuples, None), and read back by an unpickler that refuses every other type: no code runs on
reading a slice, whatever it holds.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from server.observe.prediction_log.entry import Entry, Queued, Source


class Answer(NamedTuple):
    """A classifier's answer as the writer process gets it: each row's class and probabilities."""

    labels: np.ndarray  # object array of the class labels, one per row
    probabilities: np.ndarray | None  # (rows, classes), or None when the model gave none


def encode(batch: Sequence[Queued]) -> bytes:
    """`batch` as bytes for `decode`."""
    entries = [entry for _, entry in batch]
    sources: dict[int, int] = {}
    source_list: list[tuple[Any, ...]] = []
    source_index = []
    for entry in entries:
        index = sources.get(id(entry.source))
        if index is None:
            index = sources[id(entry.source)] = len(source_list)
            source = entry.source
            source_list.append(
                (source.model_name, source.version, source.variant, source.feature_names, source.class_names)
            )
        source_index.append(index)
    return pickle.dumps(
        (
            [sequence for sequence, _ in batch],
            [entry.logged_at for entry in entries],
            [entry.request_id for entry in entries],
            [entry.route for entry in entries],
            source_list,
            source_index,
            [entry.latency_ms for entry in entries],
            [entry.caller for entry in entries],
            _arrays([entry.features for entry in entries]),
            _answers([entry.answer for entry in entries]),
        ),
        protocol=pickle.HIGHEST_PROTOCOL,
    )


def decode(data: bytes) -> list[Queued]:
    """The requests `encode` wrote, as entries again."""
    (
        sequences,
        logged_at,
        request_ids,
        routes,
        source_list,
        source_index,
        latencies,
        callers,
        features,
        answers,
    ) = _PlainUnpickler(io.BytesIO(data)).load()
    sources = [Source(*fields) for fields in source_list]
    feature_rows = _unarrays(features)
    answer_rows = _unanswers(answers)
    return [
        (
            sequences[i],
            Entry(
                logged_at[i],
                request_ids[i],
                routes[i],
                sources[source_index[i]],
                feature_rows[i],
                answer_rows[i],
                latencies[i],
                callers[i],
            ),
        )
        for i in range(len(sequences))
    ]


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"a slice holds built-in values only, not {module}.{name}")


# Arrays: ("joined", raw bytes, dtype, width, rows per request) when every request has a 2-D
# array of one dtype and width (the usual case), else ("each", [None | (raw, dtype, shape)]).
def _arrays(arrays: list[np.ndarray | None]) -> tuple[Any, ...]:
    if any(a is not None and a.dtype.hasobject for a in arrays):
        raise TypeError("an array of objects is not sent")
    first = arrays[0] if arrays else None
    if first is not None and first.ndim == 2:
        dtype, width = first.dtype, first.shape[1]
        if all(a is not None and a.ndim == 2 and a.dtype == dtype and a.shape[1] == width for a in arrays):
            joined = np.concatenate(arrays) if len(arrays) > 1 else np.ascontiguousarray(first)
            return ("joined", joined.tobytes(), dtype.str, width, [len(a) for a in arrays])  # type: ignore[arg-type]
    return ("each", [None if a is None else _raw(a) for a in arrays])


def _raw(array: np.ndarray) -> tuple[bytes, str, tuple[int, ...]]:
    return np.ascontiguousarray(array).tobytes(), array.dtype.str, array.shape


def _unarrays(encoded: tuple[Any, ...]) -> list[np.ndarray | None]:
    if encoded[0] == "joined":
        _, raw, dtype, width, counts = encoded
        joined = np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(-1, width)
        out: list[np.ndarray | None] = []
        start = 0
        for count in counts:
            out.append(joined[start : start + count])
            start += count
        return out
    return [
        None if item is None else np.frombuffer(item[0], dtype=np.dtype(item[1])).reshape(item[2])
        for item in encoded[1]
    ]


# Answers: per request None, ("list", [text]) for a model's plain list of outputs, or its labels
# (as text) and probabilities (as an array, above).
def _answers(answers: list[Any]) -> tuple[list[Any], tuple[Any, ...]]:
    kinds: list[Any] = []
    probabilities: list[np.ndarray | None] = []
    for answer in answers:
        if answer is None:
            kinds.append(None)
            probabilities.append(None)
        elif isinstance(answer, list):
            kinds.append(("list", [str(value) for value in answer]))
            probabilities.append(None)
        else:
            kinds.append([str(label) for label in answer.labels.tolist()])
            probabilities.append(answer.probabilities)
    return kinds, _arrays(probabilities)


def _unanswers(encoded: tuple[list[Any], tuple[Any, ...]]) -> list[Any]:
    kinds, probabilities = encoded
    out: list[Any] = []
    for kind, values in zip(kinds, _unarrays(probabilities), strict=True):
        if kind is None:
            out.append(None)
        elif isinstance(kind, tuple):
            out.append(kind[1])
        else:
            out.append(Answer(np.array(kind, dtype=object), values))
    return out
