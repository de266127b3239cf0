"""Prediction results as JSON bytes, encoded once with orjson and never re-validated."""

from __future__ import annotations

from typing import Any

import orjson

from model_wrapper import Prediction
from model_wrapper.contract import LABEL_COLUMN, PREDICTION_COLUMN, probability_column


def _rows(prediction: Prediction) -> tuple[list[Any], list[Any], list[list[float]]]:
    return prediction.classes.tolist(), prediction.labels.tolist(), prediction.probabilities.tolist()


def predict_body(prediction: Prediction, class_names: tuple[str, ...], version: str | None) -> bytes:
    """The /predict answer for one row."""
    classes, labels, probabilities = _rows(prediction)
    return orjson.dumps(
        {
            "prediction": classes[0],
            "label": labels[0],
            "probabilities": dict(zip(class_names, probabilities[0], strict=True)),
            "model_version": version,
        }
    )


def batch_body(prediction: Prediction, class_names: tuple[str, ...], version: str | None) -> bytes:
    """The /batch-predict answer: one entry per record, in order."""
    classes, labels, probabilities = _rows(prediction)
    return orjson.dumps(
        {
            "predictions": [
                {"prediction": c, "label": label, "probabilities": dict(zip(class_names, p, strict=True))}
                for c, label, p in zip(classes, labels, probabilities, strict=True)
            ],
            "count": len(classes),
            "model_version": version,
        }
    )


def mlflow_body(prediction: Prediction, class_names: tuple[str, ...]) -> bytes:
    """MLflow's `{"predictions": [records]}` for the wrapper's output columns."""
    classes, labels, probabilities = _rows(prediction)
    columns = [probability_column(name) for name in class_names]
    return orjson.dumps(
        {
            "predictions": [
                {PREDICTION_COLUMN: c, LABEL_COLUMN: label, **dict(zip(columns, p, strict=True))}
                for c, label, p in zip(classes, labels, probabilities, strict=True)
            ]
        }
    )


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
