"""Our own pyfunc wrapper (`model_wrapper.SklearnClassifierModel`): its numpy entry point."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PyFuncModel

from model_wrapper import Prediction, SklearnClassifierModel
from server.runtimes.base import ClassifierRuntime
from server.runtimes.signature import Features

logger = logging.getLogger(__name__)


class WrapperRuntime(ClassifierRuntime):
    """`SklearnClassifierModel.predict_array`: the same answers as its `predict`, without pandas."""

    name = "wrapper"
    answers_records = True

    def __init__(self, model: SklearnClassifierModel) -> None:
        description = model.description
        super().__init__(
            np.asarray(description.classes, dtype=np.int64),
            description.class_names,
            len(description.feature_names),
            row_invariant=model.row_invariant,
        )
        self._model = model

    def score(self, features: np.ndarray) -> Prediction:
        return self._model.predict_array(features)

    def mlflow_output(self, prediction: Prediction) -> pd.DataFrame:
        return self._model.to_frame(prediction)


def load(pyfunc: PyFuncModel, features: Features) -> WrapperRuntime | None:
    """Our wrapper's models whose signature lists the description's features, all doubles."""
    try:
        python_model: Any = pyfunc.unwrap_python_model()
    except Exception:  # noqa: BLE001 - any other flavour is simply not ours
        return None
    if not isinstance(python_model, SklearnClassifierModel):
        return None
    if features.names != python_model.description.feature_names:
        logger.warning("model signature and description disagree; serving through the pyfunc path")
        return None
    return WrapperRuntime(python_model)
