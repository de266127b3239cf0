"""The pyfunc model: a fitted scikit-learn classifier behind MLflow's `PythonModel` interface.

Two entry points give the same answers:
- `predict` (MLflow's): a pandas frame in, a frame with the contract's output columns out;
- `predict_array` (the server's fast path): a float64 array already in feature order in, plain
  arrays out, with no pandas and no schema work, since the caller has validated the input.

A model whose estimator compiles to a linear kernel is logged with that kernel's arrays too
(`KERNEL_ARTIFACT`); loading it then scores with those and reads the estimator (skops, hence all
of scikit-learn) only when something asks for `estimator`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PythonModel, PythonModelContext

from model_wrapper.contract import LABEL_COLUMN, PREDICTION_COLUMN, probability_column
from model_wrapper.description import ModelDescription
from model_wrapper.estimator_io import load_estimator
from model_wrapper.kernels import Kernel, LinearKernel, compile_kernel

if TYPE_CHECKING:
    from sklearn.base import ClassifierMixin

ESTIMATOR_ARTIFACT = "estimator"
DESCRIPTION_ARTIFACT = "description"
KERNEL_ARTIFACT = "kernel"  # optional: a linear kernel's arrays, see `model_wrapper.kernels`


class Prediction(NamedTuple):
    """Predictions for n rows: class values, class names, and the (n, classes) probabilities."""

    classes: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray


class SklearnClassifierModel(PythonModel):
    """Serves any fitted scikit-learn classifier that has `predict_proba`."""

    def __init__(self) -> None:
        self._estimator: ClassifierMixin | None = None
        self._estimator_path: Path | None = None
        self._description: ModelDescription | None = None
        self._kernel: Kernel | None = None

    @classmethod
    def from_estimator(
        cls, estimator: ClassifierMixin, description: ModelDescription
    ) -> SklearnClassifierModel:
        """Build a ready model in-process (training and tests), without MLflow artifacts."""
        model = cls()
        model._bind(estimator, description)
        return model

    def load_context(self, context: PythonModelContext) -> None:
        description = ModelDescription.load(context.artifacts[DESCRIPTION_ARTIFACT])
        estimator_path = Path(context.artifacts[ESTIMATOR_ARTIFACT])
        kernel_path = context.artifacts.get(KERNEL_ARTIFACT)
        if kernel_path is None:
            self._bind(load_estimator(estimator_path), description)
            return
        if len(description.classes) != 2:
            raise ValueError(f"a linear kernel scores two classes, the description has {description.classes}")
        self._estimator_path = estimator_path
        self._set_kernel(LinearKernel.load(kernel_path, len(description.feature_names)), description)

    def _bind(self, estimator: ClassifierMixin, description: ModelDescription) -> None:
        fitted = tuple(int(c) for c in estimator.classes_)
        if fitted != description.classes:
            raise ValueError(
                f"estimator classes {fitted} differ from the description's {description.classes}"
            )
        self._estimator = estimator
        self._set_kernel(compile_kernel(estimator), description)

    def _set_kernel(self, kernel: Kernel, description: ModelDescription) -> None:
        self._description = description
        self._kernel = kernel
        self._classes = np.asarray(description.classes, dtype=np.int64)
        self._labels = np.asarray(description.class_names, dtype=object)
        self._output_names = [probability_column(n) for n in description.class_names]

    @property
    def description(self) -> ModelDescription:
        if self._description is None:
            raise RuntimeError("model is not loaded")
        return self._description

    @property
    def estimator(self) -> ClassifierMixin:
        """The fitted estimator; read from its artifact on first use when a kernel was loaded."""
        if self._estimator is None:
            if self._estimator_path is None:
                raise RuntimeError("model is not loaded")
            self._estimator = load_estimator(self._estimator_path)
        return self._estimator

    @property
    def row_invariant(self) -> bool:
        """Whether a row scores the same alone or in any batch (see `model_wrapper.kernels`)."""
        return self._kernel.row_invariant

    def predict_array(self, features: np.ndarray) -> Prediction:
        """Predict rows of a (n, features) float64 array in the description's feature order.

        The input is not checked here: `predict` checks it for MLflow, the server validates its
        own requests before calling this.
        """
        index, probabilities = self._kernel(features)
        return Prediction(self._classes[index], self._labels[index], probabilities)

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """MLflow's entry point; the frame has passed MLflow's schema enforcement already."""
        names = list(self.description.feature_names)
        features = model_input.loc[:, names].to_numpy(dtype=np.float64)
        finite = np.isfinite(features)
        if not finite.all():
            rows, columns = np.nonzero(~finite)
            raise MlflowException.invalid_parameter_value(
                f"feature {names[columns[0]]!r} must be a finite number (row {int(rows[0])})"
            )
        return self.to_frame(self.predict_array(features))

    def to_frame(self, prediction: Prediction) -> pd.DataFrame:
        """Lay a prediction out in the contract's output columns."""
        columns: dict[str, np.ndarray] = {
            PREDICTION_COLUMN: prediction.classes,
            LABEL_COLUMN: prediction.labels,
        }
        for position, name in enumerate(self._output_names):
            columns[name] = prediction.probabilities[:, position]
        return pd.DataFrame(columns)
