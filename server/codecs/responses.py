"""Prediction results as JSON bytes, encoded in C by msgspec and never re-validated.

Each model gets one `PredictionEncoder`, whose struct types carry its class names as JSON keys,
so a thousand records encode without building a thousand dictionaries.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from model_wrapper import Prediction
from model_wrapper.contract import LABEL_COLUMN, PREDICTION_COLUMN, probability_column


def _struct(name: str, fields: list[tuple[str, type]]) -> type[msgspec.Struct]:
    """A struct whose JSON keys are `fields`' names, whatever characters they hold."""
    positional = [(f"f{i}", kind) for i, (_, kind) in enumerate(fields)]
    rename = {f"f{i}": key for i, (key, _) in enumerate(fields)}
    # Answers are built, encoded and dropped: untracked by the garbage collector, a thousand of them
    # cost a third of what tracked ones do (the collections their allocations would trigger).
    return msgspec.defstruct(name, positional, rename=rename, gc=False)


class PredictionEncoder:
    """The three answer shapes for one model's classes."""

    def __init__(self, class_names: tuple[str, ...]) -> None:
        self._class_count = len(class_names)
        self._probabilities = _struct("Probabilities", [(name, float) for name in class_names])
        self._item = _struct(
            "Item", [("prediction", int), ("label", str), ("probabilities", self._probabilities)]
        )
        self._single = _struct(
            "Single",
            [
                ("prediction", int),
                ("label", str),
                ("probabilities", self._probabilities),
                ("model_version", Any),
            ],
        )
        self._record = _struct(
            "Record",
            [(PREDICTION_COLUMN, int), (LABEL_COLUMN, str)]
            + [(probability_column(n), float) for n in class_names],
        )
        self._encode = msgspec.json.Encoder().encode

    def _columns(self, prediction: Prediction) -> tuple[list[Any], list[Any], list[list[float]]]:
        probabilities = [prediction.probabilities[:, i].tolist() for i in range(self._class_count)]
        return prediction.classes.tolist(), prediction.labels.tolist(), probabilities

    def single(self, prediction: Prediction, version: str | None) -> bytes:
        """The /predict answer for one row."""
        classes, labels, probabilities = self._columns(prediction)
        chances = self._probabilities(*(column[0] for column in probabilities))
        return self._encode(self._single(classes[0], labels[0], chances, version))

    def batch(self, prediction: Prediction, version: str | None) -> bytes:
        """The /batch-predict answer: one entry per record, in order."""
        classes, labels, probabilities = self._columns(prediction)
        items = list(map(self._item, classes, labels, map(self._probabilities, *probabilities)))
        return self._encode({"predictions": items, "count": len(items), "model_version": version})

    def mlflow(self, prediction: Prediction) -> bytes:
        """MLflow's `{"predictions": [records]}` for the wrapper's output columns."""
        classes, labels, probabilities = self._columns(prediction)
        return self._encode({"predictions": list(map(self._record, classes, labels, *probabilities))})


def generic_body(rows: list[Any], version: str | None, *, single: bool) -> bytes:
    """Answers for models without the wrapper's columns: whatever the pyfunc returned, per row."""
    if single:
        return orjson.dumps(
            {"prediction": rows[0], "model_version": version}, option=orjson.OPT_SERIALIZE_NUMPY
        )
    return orjson.dumps(
        {"predictions": [{"prediction": row} for row in rows], "count": len(rows), "model_version": version},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
