"""`mlflow.sklearn`: a scikit-learn classifier logged by MLflow's own flavour, or by its autologging.

MLflow 3 writes these with skops (or, under autologging, cloudpickle), and since 3.17 it loads any
of them only while `MLFLOW_ALLOW_PICKLE_DESERIALIZATION` is true, skops included: a skops file
lists its own trusted types, so the list is no safeguard against whoever wrote the file.
registry-serve loads the skops ones with an allowlist of its own instead; autologging's pickles
only with ALLOW_PICKLED_MODELS=true.
"""

from __future__ import annotations

import mlflow
import mlflow.sklearn

from model_wrapper.estimator_io import TRUSTED_TYPES
from registry_scripts.cli import CliError
from registry_scripts.dataset import Dataset
from registry_scripts.estimators import build_estimator
from registry_scripts.flavors.common import (
    check_inputs,
    class_metadata,
    features,
    input_example,
    log_held_out_metrics,
    pip_requirements,
    signature,
)


def log_sklearn(data: Dataset, estimator_name: str, seed: int) -> str:
    """Fit on the feature frame and log with `mlflow.sklearn.log_model`; the logged model's URI."""
    estimator = build_estimator(estimator_name, seed).fit(features(data.x_train), data.y_train)
    held_out = features(data.x_test)
    log_held_out_metrics(data, estimator.predict(held_out), estimator.predict_proba(held_out))
    example = input_example(data)
    info = mlflow.sklearn.log_model(
        estimator,
        name="model",
        signature=signature(data, estimator.predict(example)),
        input_example=example,
        metadata=class_metadata(data),
        pip_requirements=pip_requirements("sklearn", "skops"),
        # skops refuses the fitted trees of the forests unless told their class is safe to build.
        skops_trusted_types=sorted(TRUSTED_TYPES),
    )
    return info.model_uri


def log_sklearn_autolog(data: Dataset, estimator_name: str, seed: int) -> str:
    """Fit under `mlflow.sklearn.autolog` in the active run, as a data scientist would, and return
    the URI of the model autologging logged (signature and input example inferred by MLflow;
    serialized with autologging's default, cloudpickle; no metadata, which autologging cannot
    pass)."""
    mlflow.sklearn.autolog(
        log_input_examples=True, log_model_signatures=True, log_post_training_metrics=False
    )
    try:
        estimator = build_estimator(estimator_name, seed).fit(features(data.x_train), data.y_train)
    finally:
        mlflow.sklearn.autolog(disable=True)
    run = mlflow.active_run()
    logged = mlflow.last_logged_model()
    if run is None or logged is None or logged.source_run_id != run.info.run_id:
        raise CliError("autologging logged no model for this run")
    uri = f"models:/{logged.model_id}"
    check_inputs(mlflow.models.get_model_info(uri).signature, "autologged model")
    held_out = features(data.x_test)
    log_held_out_metrics(data, estimator.predict(held_out), estimator.predict_proba(held_out))
    return uri
