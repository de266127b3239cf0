"""MLflow reads some of its behaviour from environment variables only; set them from our settings.

This is the one place the server writes MLflow's environment, before anything is loaded.
"""

from __future__ import annotations

import os

from server.settings import ServerSettings


def apply_mlflow_client_settings(settings: ServerSettings) -> None:
    """Bound MLflow's own retries so the server's load timeout and backoff are what apply, and
    decide whether MLflow may unpickle model files (it does by default, since MLflow 3.17 for
    every `mlflow.sklearn` model and for cloudpickled pyfunc models: unpickling runs code)."""
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.mlflow_http_request_max_retries)
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(settings.mlflow_http_request_timeout))
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true" if settings.allow_pickled_models else "false"
