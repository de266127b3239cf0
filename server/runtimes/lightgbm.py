"""`lightgbm` flavour classifiers: `LGBMClassifier`, and native boosters with a `binary` or
`multiclass` objective (others answer what is not a class probability: MLflow's generic path
serves them). Needs the `lightgbm` extra.

Both score through the booster on one thread (an `LGBMClassifier`'s own `predict_proba` adds
scikit-learn's input checks, which cost more than the trees of one row).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mlflow.pyfunc import PyFuncModel

from server.runtimes.boosters import BoosterRuntime
from server.runtimes.signature import Features

FLAVOR = "lightgbm"
_OBJECTIVES = ("binary", "multiclass", "softmax")


class LightGBMRuntime(BoosterRuntime):
    name = "lightgbm"


def load(pyfunc: PyFuncModel, features: Features) -> LightGBMRuntime | None:
    if FLAVOR not in pyfunc.metadata.flavors:
        return None
    import lightgbm

    model = pyfunc.get_raw_model()
    if isinstance(model, lightgbm.LGBMClassifier):
        booster, answers_probabilities = model.booster_, False
    elif isinstance(model, lightgbm.Booster):
        booster, answers_probabilities = model, True
    else:
        return None
    objective = _objective(booster)
    if objective not in _OBJECTIVES:
        return None
    positive_only = objective == "binary"
    if answers_probabilities:
        classes = np.arange(2 if positive_only else booster.num_model_per_iteration(), dtype=np.int64)
    else:
        classes = np.asarray(model.classes_)

    def predict(rows: np.ndarray) -> np.ndarray:
        # Up to the best iteration when training stopped early, as `predict` itself does.
        return booster.predict(rows, num_threads=1)

    return LightGBMRuntime(
        predict,
        classes,
        features,
        pyfunc.metadata.metadata,
        answers_probabilities=answers_probabilities,
        positive_only=positive_only,
        output_dtype=np.dtype(np.float64),
    )


def _objective(booster: Any) -> str | None:
    """The objective's name (`params` holds what the model file says, as `binary sigmoid:1`)."""
    objective = booster.params.get("objective")
    return str(objective).split()[0] if objective else None
