"""`xgboost` flavour classifiers: `XGBClassifier`, and native boosters with a `binary:logistic`
or `multi:softprob` objective (other objectives answer margins or class indices: MLflow's generic
path serves them). Needs the `xgboost` extra.

Rows are scored with `inplace_predict` on one thread, with the trees and the `missing` value MLflow's
call would use (`XGBClassifier.predict`, or `Booster.predict(DMatrix(frame))`): the same values,
without building a DMatrix, and without a thread team whose start costs more than a row's trees.
A model fitted on other columns than its signature's is left to MLflow's generic path.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from mlflow.pyfunc import PyFuncModel

from server.runtimes.boosters import BoosterRuntime
from server.runtimes.signature import Features

FLAVOR = "xgboost"
_OBJECTIVES = ("binary:logistic", "multi:softprob")
# The smallest double that becomes infinite as a float32 (2**128 - 2**103): a DMatrix refuses it.
FLOAT32_OVERFLOW = float(2**128 - 2**103)


class XGBoostRuntime(BoosterRuntime):
    name = "xgboost"


def load(pyfunc: PyFuncModel, features: Features) -> XGBoostRuntime | None:
    if FLAVOR not in pyfunc.metadata.flavors:
        return None
    import xgboost

    model = pyfunc.get_raw_model()
    if isinstance(model, xgboost.XGBClassifier):
        # As `XGBClassifier.predict`: its best iteration when training stopped early, its `missing`.
        booster, answers_probabilities = model.get_booster(), False
        iterations, missing = _classifier_iterations(model), model.missing
        refuses_overflow = False
    elif isinstance(model, xgboost.Booster):
        # As `Booster.predict(DMatrix(frame))`, which MLflow calls: every tree, NaN missing.
        booster, answers_probabilities = model, True
        iterations, missing = (0, 0), np.nan
        refuses_overflow = True  # the DMatrix MLflow builds refuses values a float32 cannot hold
    else:
        return None
    learner = json.loads(booster.save_config())["learner"]
    parameters = learner["learner_model_param"]
    if learner["objective"]["name"] not in _OBJECTIVES or int(parameters.get("num_target", 1)) != 1:
        return None
    if booster.feature_names is not None and tuple(booster.feature_names) != features.names:
        return None  # fitted on other columns, or in another order: MLflow's path says what happens
    positive_only = learner["objective"]["name"] == "binary:logistic"
    class_count = 2 if positive_only else int(parameters["num_class"])
    booster.set_param({"nthread": 1})

    def predict(rows: np.ndarray) -> np.ndarray:
        if refuses_overflow and np.abs(rows).max(initial=0.0) >= FLOAT32_OVERFLOW:
            raise ValueError("Input data contains `inf` or a value too large")
        return booster.inplace_predict(
            rows, iteration_range=iterations, missing=missing, validate_features=False
        )

    return XGBoostRuntime(
        predict,
        np.arange(class_count, dtype=np.int64),
        features,
        pyfunc.metadata.metadata,
        answers_probabilities=answers_probabilities,
        positive_only=positive_only,
        output_dtype=np.dtype(np.float32),
    )


def _classifier_iterations(model: Any) -> tuple[int, int]:
    """The trees `XGBClassifier.predict` uses: up to the best iteration when training stopped
    early, all of them otherwise (and always for a linear booster)."""
    if model.booster == "gblinear":
        return (0, 0)
    try:
        return (0, int(model.best_iteration) + 1)
    except AttributeError:
        return (0, 0)
