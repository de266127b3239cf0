"""The seam between the server and a model's own code: a runtime scores rows for one flavour.

A runtime is built once, when a model is loaded, from the pyfunc MLflow loaded. It owns what is
flavour-specific, so nothing else in the server asks which flavour a model is:
- `score`: float64 rows in signature order -> class values, class names, per-class probabilities;
- `row_invariant`: whether a row scores the same alone or in any batch (the batcher merges
  concurrent requests only then);
- `classes` and `class_names`: class values in probability-column order, and their names;
- `cost`: what one call costs on this machine, measured before the model serves;
- `mlflow_output`: the object this flavour's `PyFuncModel.predict` returns for the same rows, so
  `/invocations` answers byte for byte what `mlflow models serve` answers.

A model no runtime takes (`select_runtime` returns None) is served through MLflow's generic
pyfunc path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from model_wrapper import Prediction
from server.runtimes.call_cost import CallCost, calibrate

CLASS_NAMES_METADATA_KEY = "class_names"


class ClassifierRuntime(ABC):
    """Scores rows into classes and per-class probabilities for one loaded model."""

    name: ClassVar[str]
    # True when MLflow answers with the contract's records (prediction, label, probability_<class>):
    # those are encoded without building `mlflow_output`.
    answers_records: ClassVar[bool] = False

    def __init__(
        self, classes: np.ndarray, class_names: Sequence[str], width: int, *, row_invariant: bool
    ) -> None:
        if len(classes) != len(class_names):
            raise ValueError(f"{len(classes)} classes but {len(class_names)} class names")
        self.classes = classes
        self.class_names = tuple(class_names)
        self.width = width
        self.row_invariant = row_invariant
        self._labels = np.asarray(self.class_names, dtype=object)

    @abstractmethod
    def score(self, features: np.ndarray) -> Prediction:
        """Predict rows of a (n, width) float64 array in signature order (already validated)."""

    @abstractmethod
    def mlflow_output(self, prediction: Prediction) -> Any:
        """What this flavour's `PyFuncModel.predict` returns for the rows of `prediction`."""

    _cost: CallCost | None = None

    @property
    def cost(self) -> CallCost:
        """Measured by `measure_cost` before the model serves (`LoadedModel.warm_up`); on zeros at
        first use otherwise."""
        if self._cost is None:
            self._cost = calibrate(self.score, np.zeros((1, self.width)))
        return self._cost

    def measure_cost(self, sample: np.ndarray) -> None:
        """Time calls on `sample` (a row the model answers); this also warms the model up."""
        self._cost = calibrate(self.score, sample)

    def predicted(self, index: np.ndarray, probabilities: np.ndarray) -> Prediction:
        """A `Prediction` from each row's class position and the probabilities."""
        return Prediction(self.classes[index], self._labels[index], probabilities)


def class_names_for(classes: np.ndarray, metadata: dict[str, Any] | None) -> tuple[str, ...]:
    """The names a model's metadata gives its classes (`metadata={"class_names": [...]}` when it
    was logged), else the class values as text."""
    names = (metadata or {}).get(CLASS_NAMES_METADATA_KEY)
    if isinstance(names, list) and len(names) == len(classes) and all(isinstance(n, str) for n in names):
        return tuple(names)
    return tuple(str(value) for value in classes.tolist())
