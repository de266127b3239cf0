"""`xgboost` flavour classifiers: `XGBClassifier`, and native boosters with a `binary:logistic`
or `multi:softprob` objective (other objectives answer margins or class indices: MLflow's generic
path serves them). Needs the `xgboost` extra.

Rows are scored with `inplace_predict` on one thread: the same values as MLflow's
`Booster.predict(DMatrix(frame))`, without building a DMatrix, and without a thread team whose
start costs more than a row's trees.
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


class XGBoostRuntime(BoosterRuntime):
    name = "xgboost"


def load(pyfunc: PyFuncModel, features: Features) -> XGBoostRuntime | None:
    if FLAVOR not in pyfunc.metadata.flavors:
        return None
    import xgboost

    model = pyfunc.get_raw_model()
    if isinstance(model, xgboost.XGBClassifier):
        booster, answers_probabilities = model.get_booster(), False
    elif isinstance(model, xgboost.Booster):
        booster, answers_probabilities = model, True
    else:
        return None
    learner = json.loads(booster.save_config())["learner"]
    objective = learner["objective"]["name"]
    if objective not in _OBJECTIVES:
        return None
    class_count = int(learner["learner_model_param"]["num_class"]) or 2
    booster.set_param({"nthread": 1})
    iterations = _iteration_range(booster)

    def predict(rows: np.ndarray) -> np.ndarray:
        return booster.inplace_predict(rows, iteration_range=iterations, validate_features=False)

    return XGBoostRuntime(
        predict,
        np.arange(class_count, dtype=np.int64),
        features,
        pyfunc.metadata.metadata,
        answers_probabilities=answers_probabilities,
        output_dtype=np.dtype(np.float32),
    )


def _iteration_range(booster: Any) -> tuple[int, int]:
    """The trees `predict` uses: up to the best iteration when training stopped early, all else."""
    try:
        return (0, int(booster.best_iteration) + 1)
    except AttributeError:
        return (0, 0)
