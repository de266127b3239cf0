"""The default flavour: a scikit-learn classifier inside this project's own pyfunc wrapper."""

from __future__ import annotations

from model_wrapper import log_classifier
from registry_scripts.dataset import Dataset
from registry_scripts.estimators import build_estimator
from registry_scripts.flavors.common import INPUT_EXAMPLE_ROWS, log_held_out_metrics


def log_wrapper(data: Dataset, estimator_name: str, seed: int) -> str:
    """Fit and log a wrapped classifier in the active run; the logged model's URI."""
    estimator = build_estimator(estimator_name, seed)
    # Fitted on a bare array: the server's fast path predicts from arrays in feature order, and
    # the feature names travel in the model's description rather than inside the estimator.
    features = data.x_test.to_numpy(dtype=float)
    estimator.fit(data.x_train.to_numpy(dtype=float), data.y_train.to_numpy())
    log_held_out_metrics(data, estimator.predict(features), estimator.predict_proba(features))
    info = log_classifier(
        estimator, class_names=data.class_names, input_example=data.x_test.head(INPUT_EXAMPLE_ROWS)
    )
    return info.model_uri
