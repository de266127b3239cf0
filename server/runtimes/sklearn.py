"""`sklearn` flavour classifiers, as `mlflow.sklearn.log_model` and `mlflow.sklearn.autolog()` log
them: any estimator or pipeline with `predict_proba`.

Scoring follows what MLflow's pyfunc would call (`predict`, or the `pyfunc_predict_fn` the model
was logged with), so `/invocations` answers as `mlflow models serve` does:
- the class comes from `predict` itself, except for estimators whose `predict` is by definition
  the most probable class of `predict_proba` (trees, forests, neighbours), where one call gives
  both; a binary logistic regression behind standard scalers scores through the wrapper's linear
  kernel (`model_wrapper.kernels`), whose class is `predict`'s;
- a model logged with `pyfunc_predict_fn="predict_proba"` answers its probabilities on
  `/invocations`, computed on a frame exactly as MLflow hands it over (`/predict` names the most
  probable class);
- rows go in as a plain array, unless a step of the pipeline selects columns by name (or is not
  scikit-learn's own), which gets a frame with the signature's column names, as MLflow gives it.

A model fitted on other columns than its signature's, or in another order, is left to MLflow's
generic path, which answers what MLflow answers. Loading: skops files with the server's own
allowlist while unpickling is off (`server.live.mlflow_models`), MLflow's loader otherwise
(docs/security.md).
"""

from __future__ import annotations

import dataclasses
import warnings
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PyFuncModel

from model_wrapper import Prediction
from model_wrapper.kernels import LinearKernel, compile_kernel, row_invariant
from server.runtimes.base import ClassifierRuntime, class_names_for
from server.runtimes.signature import Features

FLAVOR = "sklearn"
# predict_proba's most probable class is, by definition, what predict answers for these.
_ARGMAX_DECIDERS = frozenset(
    {
        "DecisionTreeClassifier",
        "ExtraTreeClassifier",
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "KNeighborsClassifier",
    }
)
# Steps that select or compute by column name: they need a frame.
_NAMED_COLUMN_STEPS = frozenset({"ColumnTransformer", "FunctionTransformer"})


class SklearnRuntime(ClassifierRuntime):
    """A fitted scikit-learn classifier (or pipeline), scored in-process."""

    name = "sklearn"

    def __init__(
        self, estimator: Any, features: Features, metadata: dict[str, Any] | None, predict_fn: str
    ) -> None:
        classes = np.asarray(estimator.classes_)
        super().__init__(
            classes, class_names_for(classes, metadata), len(features), row_invariant=row_invariant(estimator)
        )
        self._estimator = estimator
        self._columns = list(features.names)
        self._answers_probabilities = predict_fn == "predict_proba"
        self._wants_frame = self._answers_probabilities or _needs_frame(estimator)
        kernel = compile_kernel(estimator)
        linear = isinstance(kernel, LinearKernel) and not self._answers_probabilities
        # Standing in for scikit-learn's pipeline, the kernel refuses what the pipeline refuses.
        self._linear = dataclasses.replace(kernel, refuse_non_finite=True) if linear else None
        if self._linear is not None:
            self.row_invariant = True
        self._argmax_decides = _final_step_name(estimator) in _ARGMAX_DECIDERS
        _quiet_feature_name_warning()

    def score(self, features: np.ndarray) -> Prediction:
        if self._linear is not None:
            return self.predicted(*self._linear(features))
        rows: Any = pd.DataFrame(features, columns=self._columns) if self._wants_frame else features
        probabilities = self._estimator.predict_proba(rows)
        if self._argmax_decides or self._answers_probabilities:
            return self.predicted(probabilities.argmax(axis=1), probabilities)
        index = np.searchsorted(self.classes, self._estimator.predict(rows))
        return self.predicted(index, probabilities)

    def mlflow_output(self, prediction: Prediction) -> np.ndarray:
        return prediction.probabilities if self._answers_probabilities else prediction.classes


def load(pyfunc: PyFuncModel, features: Features) -> SklearnRuntime | None:
    """Classifiers of the `sklearn` flavour served by `predict` or `predict_proba`."""
    flavors = pyfunc.metadata.flavors
    if FLAVOR not in flavors:
        return None
    predict_fn = flavors.get("python_function", {}).get("predict_fn", "predict")
    estimator = pyfunc.get_raw_model()
    if predict_fn not in ("predict", "predict_proba") or not hasattr(estimator, "predict_proba"):
        return None
    classes = getattr(estimator, "classes_", None)
    if not isinstance(classes, np.ndarray) or classes.ndim != 1 or len(classes) < 2:
        return None  # not a single-output classifier
    if len(classes) > 2 and not bool(np.all(classes[:-1] < classes[1:])):
        return None  # `predict`'s classes are found by position in a sorted `classes_`
    fitted_names = getattr(estimator, "feature_names_in_", None)
    if fitted_names is not None and tuple(fitted_names) != features.names:
        return None  # fitted on other columns, or in another order: MLflow's path says what happens
    return SklearnRuntime(estimator, features, pyfunc.metadata.metadata, predict_fn)


# Parameters that hold other estimators: a meta-estimator (a search, an ensemble of estimators,
# calibration, a column transformer) whose inner steps this module does not follow.
_INNER_ESTIMATORS = ("estimator", "estimators", "base_estimator", "transformers", "best_estimator_")


def _steps(estimator: Any) -> list[Any]:
    """Every estimator inside `estimator` (pipelines and unions unrolled), itself included."""
    found = [estimator]
    for _, step in getattr(estimator, "steps", None) or []:
        found += _steps(step)
    for _, step, *_ in getattr(estimator, "transformer_list", None) or []:
        found += _steps(step)
    return found


def _final_step_name(estimator: Any) -> str:
    steps = getattr(estimator, "steps", None)
    return _final_step_name(steps[-1][1]) if steps else type(estimator).__name__


def _needs_frame(estimator: Any) -> bool:
    """Whether a step may use column names, in an estimator fitted on a frame: one that selects by
    name, code not from scikit-learn, or a meta-estimator (a search, an ensemble, calibration),
    whose inner estimators may do either."""
    if not hasattr(estimator, "feature_names_in_"):
        return False
    for step in _steps(estimator):
        if step is None or isinstance(step, str):
            continue
        kind = type(step)
        if kind.__name__ in _NAMED_COLUMN_STEPS or not kind.__module__.startswith("sklearn."):
            return True
        if any(hasattr(step, name) for name in _INNER_ESTIMATORS):
            return True
    return False


@cache
def _quiet_feature_name_warning() -> None:
    """scikit-learn warns on every array given to an estimator fitted on a frame; the runtime
    gives arrays exactly where names do not matter (`_needs_frame`)."""
    warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)
