"""What XGBoost and LightGBM boosters have in common: a binary objective answers the positive
class's probability per row, a multiclass one a probability per class; the class is the most
probable one (the positive class when its probability is above one half)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from model_wrapper import Prediction
from server.runtimes.base import ClassifierRuntime, class_names_for
from server.runtimes.signature import Features

# A booster's own prediction for rows: (n,) positive-class probabilities, or (n, classes).
BoosterPredict = Callable[[np.ndarray], np.ndarray]


class BoosterRuntime(ClassifierRuntime):
    """A booster scored on plain rows. Trees score each row on its own (row-invariant).

    `answers_probabilities`: MLflow's pyfunc returns the booster's probabilities as they come (a
    native booster); otherwise the class values (a scikit-learn estimator's `predict`).
    `positive_only`: a binary objective, whose booster answers the positive class's probability
    alone (a multiclass one answers a column per class, even for two classes).
    """

    def __init__(
        self,
        predict: BoosterPredict,
        classes: np.ndarray,
        features: Features,
        metadata: dict[str, Any] | None,
        *,
        answers_probabilities: bool,
        positive_only: bool,
        output_dtype: np.dtype[Any],
    ) -> None:
        super().__init__(classes, class_names_for(classes, metadata), len(features), row_invariant=True)
        self._predict = predict
        self._answers_probabilities = answers_probabilities
        self._positive_only = positive_only
        self._output_dtype = output_dtype

    def score(self, features: np.ndarray) -> Prediction:
        raw = self._predict(features)
        if raw.ndim == 1:
            positive = raw.astype(np.float64)
            probabilities = np.empty((len(raw), 2))
            probabilities[:, 1] = positive
            np.subtract(1.0, positive, out=probabilities[:, 0])
            return self.predicted((raw > 0.5).astype(np.intp), probabilities)
        return self.predicted(raw.argmax(axis=1), raw.astype(np.float64))

    def mlflow_output(self, prediction: Prediction) -> np.ndarray:
        if not self._answers_probabilities:
            return prediction.classes
        probabilities = prediction.probabilities
        raw = probabilities[:, 1] if self._positive_only else probabilities
        return raw.astype(self._output_dtype)  # exact: the booster's own values, widened and back
