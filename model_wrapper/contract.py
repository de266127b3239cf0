"""The model's public contract: input feature names and the output columns of `predict`.

The output columns are part of the `/invocations` contract, so they are spelled out here once:

| column | type | meaning |
|---|---|---|
| `prediction` | long | the predicted class value (0 or 1 for the default model) |
| `label` | string | the predicted class's name (`malignant` or `benign`) |
| `probability_<name>` | double | the probability of each class, one column per class, in class order |
"""

from __future__ import annotations

from collections.abc import Sequence

from mlflow.models.signature import ModelSignature
from mlflow.types.schema import ColSpec, Schema

FEATURE_COUNT = 30
FEATURE_NAMES: tuple[str, ...] = tuple(f"feature_{i}" for i in range(1, FEATURE_COUNT + 1))

PREDICTION_COLUMN = "prediction"
LABEL_COLUMN = "label"
PROBABILITY_PREFIX = "probability_"


def probability_column(class_name: str) -> str:
    """Name of the output column holding one class's probability."""
    return f"{PROBABILITY_PREFIX}{class_name}"


def output_columns(class_names: Sequence[str]) -> list[str]:
    """Every column `predict` returns, in order."""
    return [PREDICTION_COLUMN, LABEL_COLUMN, *(probability_column(n) for n in class_names)]


def input_schema(feature_names: Sequence[str] = FEATURE_NAMES) -> Schema:
    """Exactly the given features, each a required double."""
    return Schema([ColSpec("double", name, required=True) for name in feature_names])


def output_schema(class_names: Sequence[str]) -> Schema:
    """The schema of the frame `predict` returns (see the module docstring)."""
    return Schema(
        [
            ColSpec("long", PREDICTION_COLUMN),
            ColSpec("string", LABEL_COLUMN),
            *(ColSpec("double", probability_column(n)) for n in class_names),
        ]
    )


def signature(class_names: Sequence[str], feature_names: Sequence[str] = FEATURE_NAMES) -> ModelSignature:
    """The signature logged with every model this package writes."""
    return ModelSignature(inputs=input_schema(feature_names), outputs=output_schema(class_names))
